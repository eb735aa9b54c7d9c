defmodule DspyBridge.V1.PingRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:message, 1, type: :string)
end

defmodule DspyBridge.V1.PingResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:message, 1, type: :string)
  field(:server_time, 2, type: Google.Protobuf.Timestamp, json_name: "serverTime")
  field(:version, 3, type: :string)
end

defmodule DspyBridge.V1.GetServerInfoRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3
end

defmodule DspyBridge.V1.PoolInfo do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:workers, 1, type: :int32)
  field(:workers_alive, 2, type: :int32, json_name: "workersAlive")
  field(:restarts, 3, type: :int64)
  field(:queue_depth, 4, type: :int64, json_name: "queueDepth")
  field(:in_flight, 5, type: :int64, json_name: "inFlight")
end

defmodule DspyBridge.V1.ServerLimits do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:max_sessions, 1, type: :int32, json_name: "maxSessions")
  field(:max_variables_per_session, 2, type: :int32, json_name: "maxVariablesPerSession")
  field(:max_value_bytes, 3, type: :int64, json_name: "maxValueBytes")
  field(:max_message_bytes, 4, type: :int64, json_name: "maxMessageBytes")
  field(:max_concurrent_rpcs, 5, type: :int32, json_name: "maxConcurrentRpcs")
  field(:max_session_bytes, 6, type: :int64, json_name: "maxSessionBytes")
  field(:max_sessions_per_caller, 7, type: :int32, json_name: "maxSessionsPerCaller")
  field(:default_session_ttl_seconds, 8, type: :int64, json_name: "defaultSessionTtlSeconds")
  field(:max_session_ttl_seconds, 9, type: :int64, json_name: "maxSessionTtlSeconds")
  field(:max_history_versions, 10, type: :int32, json_name: "maxHistoryVersions")
  field(:requests, 11, type: DspyBridge.V1.RequestLimits)
  field(:jobs, 12, type: DspyBridge.V1.JobLimits)
  field(:host_calls, 13, type: DspyBridge.V1.HostCallLimits, json_name: "hostCalls")
  field(:lm_allow_lists, 14, type: DspyBridge.V1.LMAllowLists, json_name: "lmAllowLists")
end

defmodule DspyBridge.V1.RequestLimits do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:max_metadata_entries, 1, type: :int32, json_name: "maxMetadataEntries")
  field(:max_metadata_key_chars, 2, type: :int32, json_name: "maxMetadataKeyChars")
  field(:max_metadata_value_chars, 3, type: :int32, json_name: "maxMetadataValueChars")
  field(:max_description_chars, 4, type: :int32, json_name: "maxDescriptionChars")
  field(:max_reason_chars, 5, type: :int32, json_name: "maxReasonChars")
  field(:max_instructions_chars, 6, type: :int32, json_name: "maxInstructionsChars")
  field(:max_config_bytes, 7, type: :int64, json_name: "maxConfigBytes")
  field(:max_dataset_examples, 8, type: :int32, json_name: "maxDatasetExamples")
end

defmodule DspyBridge.V1.JobLimits do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:max_running_jobs, 1, type: :int32, json_name: "maxRunningJobs")
  field(:max_running_jobs_per_caller, 2, type: :int32, json_name: "maxRunningJobsPerCaller")
  field(:max_queued_jobs_per_caller, 3, type: :int32, json_name: "maxQueuedJobsPerCaller")
  field(:max_job_duration, 4, type: Google.Protobuf.Duration, json_name: "maxJobDuration")
  field(:max_metric_calls, 5, type: :int64, json_name: "maxMetricCalls")
end

defmodule DspyBridge.V1.HostCallLimits do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:max_connections_per_session, 1, type: :int32, json_name: "maxConnectionsPerSession")
  field(:max_names, 2, type: :int32, json_name: "maxNames")
  field(:max_schema_bytes, 3, type: :int64, json_name: "maxSchemaBytes")
  field(:max_calls_in_flight, 4, type: :int32, json_name: "maxCallsInFlight")
  field(:max_result_bytes, 5, type: :int64, json_name: "maxResultBytes")
  field(:default_tool_timeout_ms, 6, type: :int64, json_name: "defaultToolTimeoutMs")
  field(:default_tool_max_concurrency, 7, type: :int32, json_name: "defaultToolMaxConcurrency")
  field(:metric_timeout_ms, 8, type: :int64, json_name: "metricTimeoutMs")
  field(:lm_timeout_ms, 9, type: :int64, json_name: "lmTimeoutMs")
end

defmodule DspyBridge.V1.LMAllowLists do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:api_base_count, 1, type: :int32, json_name: "apiBaseCount")
  field(:key_env_pattern_count, 2, type: :int32, json_name: "keyEnvPatternCount")
end

defmodule DspyBridge.V1.GetServerInfoResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:bridge_version, 1, type: :string, json_name: "bridgeVersion")
  field(:dspy_version, 2, type: :string, json_name: "dspyVersion")
  field(:python_version, 3, type: :string, json_name: "pythonVersion")
  field(:module_types, 4, repeated: true, type: :string, json_name: "moduleTypes")
  field(:optimizers, 5, repeated: true, type: :string)
  field(:metrics, 6, repeated: true, type: :string)

  field(:variable_types, 7,
    repeated: true,
    type: DspyBridge.V1.VariableType,
    json_name: "variableTypes",
    enum: true
  )

  field(:store_backend, 8, type: :string, json_name: "storeBackend")
  field(:pool, 9, type: DspyBridge.V1.PoolInfo)
  field(:limits, 10, type: DspyBridge.V1.ServerLimits)
  field(:default_lm_model, 11, type: :string, json_name: "defaultLmModel")
  field(:start_time, 12, type: Google.Protobuf.Timestamp, json_name: "startTime")
end

defmodule DspyBridge.V1.CreateSessionRequest.MetadataEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.CreateSessionRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")

  field(:metadata, 2,
    repeated: true,
    type: DspyBridge.V1.CreateSessionRequest.MetadataEntry,
    map: true
  )

  field(:ttl_seconds, 3, type: :int64, json_name: "ttlSeconds")
end

defmodule DspyBridge.V1.CreateSessionResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session, 1, type: DspyBridge.V1.Session)
end

defmodule DspyBridge.V1.GetSessionRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
end

defmodule DspyBridge.V1.GetSessionResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session, 1, type: DspyBridge.V1.Session)
end

defmodule DspyBridge.V1.ListSessionsRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:page_size, 1, type: :int32, json_name: "pageSize")
  field(:page_token, 2, type: :string, json_name: "pageToken")
end

defmodule DspyBridge.V1.ListSessionsResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:sessions, 1, repeated: true, type: DspyBridge.V1.Session)
  field(:next_page_token, 2, type: :string, json_name: "nextPageToken")
end

defmodule DspyBridge.V1.DeleteSessionRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
end

defmodule DspyBridge.V1.DeleteSessionResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3
end

defmodule DspyBridge.V1.HeartbeatRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
end

defmodule DspyBridge.V1.HeartbeatResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session, 1, type: DspyBridge.V1.Session)
end

defmodule DspyBridge.V1.ConfigureLMRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:lm, 2, type: DspyBridge.V1.LMConfig)
end

defmodule DspyBridge.V1.ConfigureLMResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session, 1, type: DspyBridge.V1.Session)
end

defmodule DspyBridge.V1.RegisterVariableRequest.MetadataEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.RegisterVariableRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:name, 2, type: :string)
  field(:type, 3, type: DspyBridge.V1.VariableType, enum: true)
  field(:initial_value, 4, type: DspyBridge.V1.Value, json_name: "initialValue")
  field(:constraints, 5, type: DspyBridge.V1.VariableConstraints)
  field(:description, 6, type: :string)

  field(:metadata, 7,
    repeated: true,
    type: DspyBridge.V1.RegisterVariableRequest.MetadataEntry,
    map: true
  )
end

defmodule DspyBridge.V1.RegisterVariableResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variable, 1, type: DspyBridge.V1.Variable)
end

defmodule DspyBridge.V1.GetVariableRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:name, 2, type: :string)
end

defmodule DspyBridge.V1.GetVariableResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variable, 1, type: DspyBridge.V1.Variable)
end

defmodule DspyBridge.V1.ListVariablesRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:pattern, 2, type: :string)
  field(:page_size, 3, type: :int32, json_name: "pageSize")
  field(:page_token, 4, type: :string, json_name: "pageToken")
end

defmodule DspyBridge.V1.ListVariablesResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variables, 1, repeated: true, type: DspyBridge.V1.Variable)
  field(:next_page_token, 2, type: :string, json_name: "nextPageToken")
end

defmodule DspyBridge.V1.DeleteVariableRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:name, 2, type: :string)
end

defmodule DspyBridge.V1.DeleteVariableResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3
end

defmodule DspyBridge.V1.UpdateVariableRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:name, 2, type: :string)
  field(:value, 3, type: DspyBridge.V1.Value)
  field(:expected_version, 4, proto3_optional: true, type: :int64, json_name: "expectedVersion")
  field(:source, 5, type: :string)
  field(:reason, 6, type: :string)
end

defmodule DspyBridge.V1.UpdateVariableResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variable, 1, type: DspyBridge.V1.Variable)
end

defmodule DspyBridge.V1.VariableWrite do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
  field(:expected_version, 3, proto3_optional: true, type: :int64, json_name: "expectedVersion")
end

defmodule DspyBridge.V1.BatchUpdateVariablesRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:writes, 2, repeated: true, type: DspyBridge.V1.VariableWrite)
  field(:atomic, 3, type: :bool)
  field(:source, 4, type: :string)
  field(:reason, 5, type: :string)
end

defmodule DspyBridge.V1.VariableWriteResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variable, 1, type: DspyBridge.V1.Variable)
  field(:error, 2, type: Google.Rpc.Status)
end

defmodule DspyBridge.V1.BatchUpdateVariablesResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:results, 1, repeated: true, type: DspyBridge.V1.VariableWriteResult)
end

defmodule DspyBridge.V1.WatchVariablesRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:names, 2, repeated: true, type: :string)
  field(:include_initial, 3, type: :bool, json_name: "includeInitial")
  field(:resume_token, 4, type: :string, json_name: "resumeToken")
end

defmodule DspyBridge.V1.WatchResync do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variables, 1, repeated: true, type: DspyBridge.V1.Variable)
  field(:skipped_changes, 2, type: :int64, json_name: "skippedChanges")
  field(:more, 3, type: :bool)
end

defmodule DspyBridge.V1.SessionEnded do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:reason, 1, type: :string)
end

defmodule DspyBridge.V1.WatchVariablesResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:event, 0)

  field(:change, 1, type: DspyBridge.V1.VariableChange, oneof: 0)
  field(:resync, 2, type: DspyBridge.V1.WatchResync, oneof: 0)
  field(:session_ended, 3, type: DspyBridge.V1.SessionEnded, json_name: "sessionEnded", oneof: 0)
  field(:resume_token, 4, type: :string, json_name: "resumeToken")
end

defmodule DspyBridge.V1.GetVariableHistoryRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:name, 2, type: :string)
  field(:limit, 3, type: :int32)
  field(:page_token, 4, type: :string, json_name: "pageToken")
end

defmodule DspyBridge.V1.GetVariableHistoryResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:entries, 1, repeated: true, type: DspyBridge.V1.VariableHistoryEntry)
  field(:next_page_token, 2, type: :string, json_name: "nextPageToken")
end

defmodule DspyBridge.V1.RollbackVariableRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:name, 2, type: :string)
  field(:target_version, 3, type: :int64, json_name: "targetVersion")
  field(:expected_version, 4, proto3_optional: true, type: :int64, json_name: "expectedVersion")
  field(:source, 5, type: :string)
  field(:reason, 6, type: :string)
end

defmodule DspyBridge.V1.RollbackVariableResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:variable, 1, type: DspyBridge.V1.Variable)
end

defmodule DspyBridge.V1.CreateModuleRequest.VariableBindingsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.CreateModuleRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:module_type, 3, type: :string, json_name: "moduleType")
  field(:signature, 4, type: DspyBridge.V1.Signature)
  field(:config, 5, type: Google.Protobuf.Struct)

  field(:variable_bindings, 6,
    repeated: true,
    type: DspyBridge.V1.CreateModuleRequest.VariableBindingsEntry,
    json_name: "variableBindings",
    map: true
  )

  field(:lm, 7, type: DspyBridge.V1.LMConfig)
end

defmodule DspyBridge.V1.CreateModuleResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:module, 1, type: DspyBridge.V1.Module)
end

defmodule DspyBridge.V1.GetModuleRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:version, 3, type: :int64)
end

defmodule DspyBridge.V1.GetModuleResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:module, 1, type: DspyBridge.V1.Module)
end

defmodule DspyBridge.V1.ListModulesRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:page_size, 2, type: :int32, json_name: "pageSize")
  field(:page_token, 3, type: :string, json_name: "pageToken")
end

defmodule DspyBridge.V1.ListModulesResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:modules, 1, repeated: true, type: DspyBridge.V1.Module)
  field(:next_page_token, 2, type: :string, json_name: "nextPageToken")
end

defmodule DspyBridge.V1.DeleteModuleRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
end

defmodule DspyBridge.V1.DeleteModuleResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3
end

defmodule DspyBridge.V1.ExecuteRequest.InputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteRequest.VariableOverridesEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:inputs, 3, repeated: true, type: DspyBridge.V1.ExecuteRequest.InputsEntry, map: true)

  field(:variable_overrides, 4,
    repeated: true,
    type: DspyBridge.V1.ExecuteRequest.VariableOverridesEntry,
    json_name: "variableOverrides",
    map: true
  )

  field(:options, 5, type: DspyBridge.V1.ExecuteOptions)
end

defmodule DspyBridge.V1.ExecuteResponse.OutputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteResponse.VariablesUsedEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.VariableUsage)
end

defmodule DspyBridge.V1.ExecuteResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:outputs, 1, repeated: true, type: DspyBridge.V1.ExecuteResponse.OutputsEntry, map: true)

  field(:variables_used, 2,
    repeated: true,
    type: DspyBridge.V1.ExecuteResponse.VariablesUsedEntry,
    json_name: "variablesUsed",
    map: true
  )

  field(:usage, 3, type: DspyBridge.V1.Usage)
  field(:latency_ms, 4, type: :double, json_name: "latencyMs")
  field(:module_version, 5, type: :int64, json_name: "moduleVersion")
  field(:trace, 6, repeated: true, type: DspyBridge.V1.LMCallTrace)
  field(:first_chunk_ms, 7, type: :double, json_name: "firstChunkMs")
end

defmodule DspyBridge.V1.ExecuteBatchItem.InputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteBatchItem do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:inputs, 1, repeated: true, type: DspyBridge.V1.ExecuteBatchItem.InputsEntry, map: true)
end

defmodule DspyBridge.V1.ExecuteBatchRequest.VariableOverridesEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteBatchRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:items, 3, repeated: true, type: DspyBridge.V1.ExecuteBatchItem)

  field(:variable_overrides, 4,
    repeated: true,
    type: DspyBridge.V1.ExecuteBatchRequest.VariableOverridesEntry,
    json_name: "variableOverrides",
    map: true
  )

  field(:options, 5, type: DspyBridge.V1.ExecuteOptions)
  field(:max_concurrency, 6, type: :int32, json_name: "maxConcurrency")
end

defmodule DspyBridge.V1.ExecuteBatchResult.OutputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteBatchResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:outputs, 1,
    repeated: true,
    type: DspyBridge.V1.ExecuteBatchResult.OutputsEntry,
    map: true
  )

  field(:error, 2, type: Google.Rpc.Status)
  field(:usage, 3, type: DspyBridge.V1.Usage)
  field(:latency_ms, 4, type: :double, json_name: "latencyMs")
  field(:trace, 5, repeated: true, type: DspyBridge.V1.LMCallTrace)
end

defmodule DspyBridge.V1.ExecuteBatchResponse.VariablesUsedEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.VariableUsage)
end

defmodule DspyBridge.V1.ExecuteBatchResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:results, 1, repeated: true, type: DspyBridge.V1.ExecuteBatchResult)

  field(:variables_used, 2,
    repeated: true,
    type: DspyBridge.V1.ExecuteBatchResponse.VariablesUsedEntry,
    json_name: "variablesUsed",
    map: true
  )

  field(:usage, 3, type: DspyBridge.V1.Usage)
  field(:latency_ms, 4, type: :double, json_name: "latencyMs")
  field(:module_version, 5, type: :int64, json_name: "moduleVersion")
end

defmodule DspyBridge.V1.ExecuteStreamRequest.InputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteStreamRequest.VariableOverridesEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.ExecuteStreamRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")

  field(:inputs, 3,
    repeated: true,
    type: DspyBridge.V1.ExecuteStreamRequest.InputsEntry,
    map: true
  )

  field(:variable_overrides, 4,
    repeated: true,
    type: DspyBridge.V1.ExecuteStreamRequest.VariableOverridesEntry,
    json_name: "variableOverrides",
    map: true
  )

  field(:options, 5, type: DspyBridge.V1.ExecuteOptions)
end

defmodule DspyBridge.V1.OutputChunk do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:field, 1, type: :string)
  field(:text, 2, type: :string)
  field(:last, 3, type: :bool)
end

defmodule DspyBridge.V1.ExecutionStatus do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:message, 1, type: :string)
end

defmodule DspyBridge.V1.ExecuteStreamResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:event, 0)

  field(:chunk, 1, type: DspyBridge.V1.OutputChunk, oneof: 0)
  field(:status, 2, type: DspyBridge.V1.ExecutionStatus, oneof: 0)
  field(:result, 3, type: DspyBridge.V1.ExecuteResponse, oneof: 0)
end

defmodule DspyBridge.V1.ExportModuleStateRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:version, 3, type: :int64)
end

defmodule DspyBridge.V1.ExportModuleStateResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:state_json, 1, type: :string, json_name: "stateJson")
  field(:version, 2, type: :int64)
end

defmodule DspyBridge.V1.ImportModuleStateRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:state_json, 3, type: :string, json_name: "stateJson")
  field(:expected_version, 4, proto3_optional: true, type: :int64, json_name: "expectedVersion")
end

defmodule DspyBridge.V1.ImportModuleStateResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:module, 1, type: DspyBridge.V1.Module)
end

defmodule DspyBridge.V1.RevertModuleRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:to_version, 3, type: :int64, json_name: "toVersion")
  field(:expected_version, 4, proto3_optional: true, type: :int64, json_name: "expectedVersion")
end

defmodule DspyBridge.V1.RevertModuleResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:module, 1, type: DspyBridge.V1.Module)
end

defmodule DspyBridge.V1.EvaluateRequest.VariableOverridesEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.EvaluateRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:dataset, 3, repeated: true, type: DspyBridge.V1.Example)
  field(:metric, 4, type: DspyBridge.V1.MetricSpec)
  field(:num_threads, 5, type: :int32, json_name: "numThreads")

  field(:variable_overrides, 6,
    repeated: true,
    type: DspyBridge.V1.EvaluateRequest.VariableOverridesEntry,
    json_name: "variableOverrides",
    map: true
  )

  field(:module_version, 7, type: :int64, json_name: "moduleVersion")
end

defmodule DspyBridge.V1.EvaluateResponse.VariablesUsedEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.VariableUsage)
end

defmodule DspyBridge.V1.EvaluateResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:score, 1, type: :double)
  field(:results, 2, repeated: true, type: DspyBridge.V1.EvaluationResult)
  field(:usage, 3, type: DspyBridge.V1.Usage)
  field(:module_version, 4, type: :int64, json_name: "moduleVersion")

  field(:variables_used, 5,
    repeated: true,
    type: DspyBridge.V1.EvaluateResponse.VariablesUsedEntry,
    json_name: "variablesUsed",
    map: true
  )

  field(:latency_ms, 6, type: :double, json_name: "latencyMs")
end

defmodule DspyBridge.V1.EvaluateStreamRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:evaluation, 1, type: DspyBridge.V1.EvaluateRequest)
end

defmodule DspyBridge.V1.EvaluateStreamResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:event, 0)

  field(:progress, 1, type: DspyBridge.V1.JobProgress, oneof: 0)
  field(:result, 2, type: DspyBridge.V1.EvaluateResponse, oneof: 0)
end

defmodule DspyBridge.V1.StartOptimizationRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:optimizer, 3, type: :string)
  field(:config, 4, type: Google.Protobuf.Struct)
  field(:trainset, 5, repeated: true, type: DspyBridge.V1.Example)
  field(:valset, 6, repeated: true, type: DspyBridge.V1.Example)
  field(:metric, 7, type: DspyBridge.V1.MetricSpec)
  field(:apply, 8, type: :bool)
  field(:variable_search, 9, type: DspyBridge.V1.VariableSearchSpec, json_name: "variableSearch")
end

defmodule DspyBridge.V1.StartOptimizationResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:job, 1, type: DspyBridge.V1.Job)
end

defmodule DspyBridge.V1.GetOptimizationRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:job_id, 2, type: :string, json_name: "jobId")
end

defmodule DspyBridge.V1.GetOptimizationResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:job, 1, type: DspyBridge.V1.Job)
end

defmodule DspyBridge.V1.WatchOptimizationRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:job_id, 2, type: :string, json_name: "jobId")
end

defmodule DspyBridge.V1.WatchOptimizationResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:job, 1, type: DspyBridge.V1.Job)
end

defmodule DspyBridge.V1.CancelOptimizationRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:job_id, 2, type: :string, json_name: "jobId")
end

defmodule DspyBridge.V1.CancelOptimizationResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:job, 1, type: DspyBridge.V1.Job)
end

defmodule DspyBridge.V1.ListOptimizationsRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:module_id, 2, type: :string, json_name: "moduleId")
  field(:page_size, 3, type: :int32, json_name: "pageSize")
  field(:page_token, 4, type: :string, json_name: "pageToken")
end

defmodule DspyBridge.V1.ListOptimizationsResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:jobs, 1, repeated: true, type: DspyBridge.V1.Job)
  field(:next_page_token, 2, type: :string, json_name: "nextPageToken")
end

defmodule DspyBridge.V1.ApplyOptimizationRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:job_id, 2, type: :string, json_name: "jobId")
  field(:trial_number, 3, proto3_optional: true, type: :int32, json_name: "trialNumber")
end

defmodule DspyBridge.V1.ApplyOptimizationResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:job, 1, type: DspyBridge.V1.Job)
  field(:module, 2, type: DspyBridge.V1.Module)
  field(:variables, 3, repeated: true, type: DspyBridge.V1.Variable)
end

defmodule DspyBridge.V1.BridgeService.Service do
  @moduledoc false

  use GRPC.Service, name: "dspy_bridge.v1.BridgeService", protoc_gen_elixir_version: "0.14.1"

  rpc(:Ping, DspyBridge.V1.PingRequest, DspyBridge.V1.PingResponse)

  rpc(:GetServerInfo, DspyBridge.V1.GetServerInfoRequest, DspyBridge.V1.GetServerInfoResponse)

  rpc(:CreateSession, DspyBridge.V1.CreateSessionRequest, DspyBridge.V1.CreateSessionResponse)

  rpc(:GetSession, DspyBridge.V1.GetSessionRequest, DspyBridge.V1.GetSessionResponse)

  rpc(:ListSessions, DspyBridge.V1.ListSessionsRequest, DspyBridge.V1.ListSessionsResponse)

  rpc(:DeleteSession, DspyBridge.V1.DeleteSessionRequest, DspyBridge.V1.DeleteSessionResponse)

  rpc(:Heartbeat, DspyBridge.V1.HeartbeatRequest, DspyBridge.V1.HeartbeatResponse)

  rpc(:ConfigureLM, DspyBridge.V1.ConfigureLMRequest, DspyBridge.V1.ConfigureLMResponse)

  rpc(
    :RegisterVariable,
    DspyBridge.V1.RegisterVariableRequest,
    DspyBridge.V1.RegisterVariableResponse
  )

  rpc(:GetVariable, DspyBridge.V1.GetVariableRequest, DspyBridge.V1.GetVariableResponse)

  rpc(:ListVariables, DspyBridge.V1.ListVariablesRequest, DspyBridge.V1.ListVariablesResponse)

  rpc(:DeleteVariable, DspyBridge.V1.DeleteVariableRequest, DspyBridge.V1.DeleteVariableResponse)

  rpc(:UpdateVariable, DspyBridge.V1.UpdateVariableRequest, DspyBridge.V1.UpdateVariableResponse)

  rpc(
    :BatchUpdateVariables,
    DspyBridge.V1.BatchUpdateVariablesRequest,
    DspyBridge.V1.BatchUpdateVariablesResponse
  )

  rpc(
    :WatchVariables,
    DspyBridge.V1.WatchVariablesRequest,
    stream(DspyBridge.V1.WatchVariablesResponse)
  )

  rpc(
    :GetVariableHistory,
    DspyBridge.V1.GetVariableHistoryRequest,
    DspyBridge.V1.GetVariableHistoryResponse
  )

  rpc(
    :RollbackVariable,
    DspyBridge.V1.RollbackVariableRequest,
    DspyBridge.V1.RollbackVariableResponse
  )

  rpc(:CreateModule, DspyBridge.V1.CreateModuleRequest, DspyBridge.V1.CreateModuleResponse)

  rpc(:GetModule, DspyBridge.V1.GetModuleRequest, DspyBridge.V1.GetModuleResponse)

  rpc(:ListModules, DspyBridge.V1.ListModulesRequest, DspyBridge.V1.ListModulesResponse)

  rpc(:DeleteModule, DspyBridge.V1.DeleteModuleRequest, DspyBridge.V1.DeleteModuleResponse)

  rpc(:Execute, DspyBridge.V1.ExecuteRequest, DspyBridge.V1.ExecuteResponse)

  rpc(:ExecuteBatch, DspyBridge.V1.ExecuteBatchRequest, DspyBridge.V1.ExecuteBatchResponse)

  rpc(
    :ExecuteStream,
    DspyBridge.V1.ExecuteStreamRequest,
    stream(DspyBridge.V1.ExecuteStreamResponse)
  )

  rpc(
    :ExportModuleState,
    DspyBridge.V1.ExportModuleStateRequest,
    DspyBridge.V1.ExportModuleStateResponse
  )

  rpc(
    :ImportModuleState,
    DspyBridge.V1.ImportModuleStateRequest,
    DspyBridge.V1.ImportModuleStateResponse
  )

  rpc(:RevertModule, DspyBridge.V1.RevertModuleRequest, DspyBridge.V1.RevertModuleResponse)

  rpc(:Evaluate, DspyBridge.V1.EvaluateRequest, DspyBridge.V1.EvaluateResponse)

  rpc(
    :EvaluateStream,
    DspyBridge.V1.EvaluateStreamRequest,
    stream(DspyBridge.V1.EvaluateStreamResponse)
  )

  rpc(
    :StartOptimization,
    DspyBridge.V1.StartOptimizationRequest,
    DspyBridge.V1.StartOptimizationResponse
  )

  rpc(
    :GetOptimization,
    DspyBridge.V1.GetOptimizationRequest,
    DspyBridge.V1.GetOptimizationResponse
  )

  rpc(
    :WatchOptimization,
    DspyBridge.V1.WatchOptimizationRequest,
    stream(DspyBridge.V1.WatchOptimizationResponse)
  )

  rpc(
    :CancelOptimization,
    DspyBridge.V1.CancelOptimizationRequest,
    DspyBridge.V1.CancelOptimizationResponse
  )

  rpc(
    :ListOptimizations,
    DspyBridge.V1.ListOptimizationsRequest,
    DspyBridge.V1.ListOptimizationsResponse
  )

  rpc(
    :ApplyOptimization,
    DspyBridge.V1.ApplyOptimizationRequest,
    DspyBridge.V1.ApplyOptimizationResponse
  )

  rpc(:Connect, stream(DspyBridge.V1.ConnectRequest), stream(DspyBridge.V1.ConnectResponse))
end

defmodule DspyBridge.V1.BridgeService.Stub do
  @moduledoc false

  use GRPC.Stub, service: DspyBridge.V1.BridgeService.Service
end
