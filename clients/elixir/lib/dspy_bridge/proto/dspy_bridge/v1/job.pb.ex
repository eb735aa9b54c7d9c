defmodule DspyBridge.V1.JobStatus do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:JOB_STATUS_UNSPECIFIED, 0)
  field(:JOB_STATUS_QUEUED, 1)
  field(:JOB_STATUS_RUNNING, 2)
  field(:JOB_STATUS_SUCCEEDED, 3)
  field(:JOB_STATUS_FAILED, 4)
  field(:JOB_STATUS_CANCELLED, 5)
  field(:JOB_STATUS_INTERRUPTED, 6)
end

defmodule DspyBridge.V1.TrialState do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:TRIAL_STATE_UNSPECIFIED, 0)
  field(:TRIAL_STATE_RUNNING, 1)
  field(:TRIAL_STATE_COMPLETE, 2)
  field(:TRIAL_STATE_PRUNED, 3)
  field(:TRIAL_STATE_FAIL, 4)
end

defmodule DspyBridge.V1.SearchSampler do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:SEARCH_SAMPLER_UNSPECIFIED, 0)
  field(:SEARCH_SAMPLER_TPE, 1)
  field(:SEARCH_SAMPLER_RANDOM, 2)
  field(:SEARCH_SAMPLER_GRID, 3)
end

defmodule DspyBridge.V1.ObjectiveDirection do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:OBJECTIVE_DIRECTION_UNSPECIFIED, 0)
  field(:OBJECTIVE_DIRECTION_MAXIMIZE, 1)
  field(:OBJECTIVE_DIRECTION_MINIMIZE, 2)
end

defmodule DspyBridge.V1.Example.InputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.Example.LabelsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.Example do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:inputs, 1, repeated: true, type: DspyBridge.V1.Example.InputsEntry, map: true)
  field(:labels, 2, repeated: true, type: DspyBridge.V1.Example.LabelsEntry, map: true)
end

defmodule DspyBridge.V1.MetricSpec do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:options, 2, type: Google.Protobuf.Struct)
end

defmodule DspyBridge.V1.EvaluationResult.OutputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.EvaluationResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:index, 1, type: :int32)
  field(:outputs, 2, repeated: true, type: DspyBridge.V1.EvaluationResult.OutputsEntry, map: true)
  field(:score, 3, type: :double)
  field(:error, 4, type: Google.Rpc.Status)
  field(:latency_ms, 5, type: :double, json_name: "latencyMs")
end

defmodule DspyBridge.V1.JobProgress do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:phase, 1, type: :string)
  field(:completed, 2, type: :int64)
  field(:total, 3, type: :int64)
  field(:message, 4, type: :string)
end

defmodule DspyBridge.V1.ModuleVersionResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:module_version, 1, type: :int64, json_name: "moduleVersion")
  field(:previous_version, 2, type: :int64, json_name: "previousVersion")
  field(:score_before, 3, proto3_optional: true, type: :double, json_name: "scoreBefore")
  field(:score_after, 4, proto3_optional: true, type: :double, json_name: "scoreAfter")
  field(:demo_count, 5, type: :int32, json_name: "demoCount")
  field(:instructions, 6, repeated: true, type: :string)
  field(:state_json, 7, type: :string, json_name: "stateJson")
end

defmodule DspyBridge.V1.Trial.ValuesEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.Trial.ObjectivesEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :double)
end

defmodule DspyBridge.V1.Trial do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:number, 1, type: :int32)
  field(:values, 2, repeated: true, type: DspyBridge.V1.Trial.ValuesEntry, map: true)
  field(:objectives, 3, repeated: true, type: DspyBridge.V1.Trial.ObjectivesEntry, map: true)
  field(:state, 4, type: DspyBridge.V1.TrialState, enum: true)
  field(:error_message, 5, type: :string, json_name: "errorMessage")
end

defmodule DspyBridge.V1.VariableSearchResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:trials, 1, repeated: true, type: DspyBridge.V1.Trial)
  field(:pareto_front, 2, repeated: true, type: DspyBridge.V1.Trial, json_name: "paretoFront")
  field(:best, 3, type: DspyBridge.V1.Trial)
end

defmodule DspyBridge.V1.Job do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:result, 0)

  field(:job_id, 1, type: :string, json_name: "jobId")
  field(:session_id, 2, type: :string, json_name: "sessionId")
  field(:module_id, 3, type: :string, json_name: "moduleId")
  field(:optimizer, 4, type: :string)
  field(:status, 5, type: DspyBridge.V1.JobStatus, enum: true)
  field(:progress, 6, type: DspyBridge.V1.JobProgress)
  field(:best_score, 7, proto3_optional: true, type: :double, json_name: "bestScore")
  field(:error, 8, type: Google.Rpc.Status)

  field(:module_result, 9,
    type: DspyBridge.V1.ModuleVersionResult,
    json_name: "moduleResult",
    oneof: 0
  )

  field(:variable_search_result, 10,
    type: DspyBridge.V1.VariableSearchResult,
    json_name: "variableSearchResult",
    oneof: 0
  )

  field(:applied, 11, type: :bool)
  field(:create_time, 12, type: Google.Protobuf.Timestamp, json_name: "createTime")
  field(:start_time, 13, type: Google.Protobuf.Timestamp, json_name: "startTime")
  field(:end_time, 14, type: Google.Protobuf.Timestamp, json_name: "endTime")
  field(:config, 15, type: Google.Protobuf.Struct)
  field(:metric, 16, type: DspyBridge.V1.MetricSpec)
  field(:apply_requested, 17, type: :bool, json_name: "applyRequested")
  field(:trainset_size, 18, type: :int32, json_name: "trainsetSize")
  field(:valset_size, 19, type: :int32, json_name: "valsetSize")
end

defmodule DspyBridge.V1.SearchObjective do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:direction, 2, type: DspyBridge.V1.ObjectiveDirection, enum: true)
end

defmodule DspyBridge.V1.SearchVariable do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:low, 2, proto3_optional: true, type: :double)
  field(:high, 3, proto3_optional: true, type: :double)
  field(:step, 4, proto3_optional: true, type: :double)
  field(:log, 5, type: :bool)
  field(:choices, 6, repeated: true, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.VariableSearchSpec do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variables, 1, repeated: true, type: DspyBridge.V1.SearchVariable)
  field(:sampler, 2, type: DspyBridge.V1.SearchSampler, enum: true)
  field(:n_trials, 3, type: :int32, json_name: "nTrials")
  field(:objectives, 4, repeated: true, type: DspyBridge.V1.SearchObjective)
  field(:seed, 5, proto3_optional: true, type: :int64)
end
