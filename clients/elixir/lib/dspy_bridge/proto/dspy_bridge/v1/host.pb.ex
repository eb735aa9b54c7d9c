defmodule DspyBridge.V1.HostTool do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:description, 2, type: :string)
  field(:parameters, 3, type: Google.Protobuf.Struct)
  field(:timeout_ms, 4, type: :int64, json_name: "timeoutMs")
  field(:max_concurrency, 5, type: :int32, json_name: "maxConcurrency")
end

defmodule DspyBridge.V1.HostMetric do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:description, 2, type: :string)
end

defmodule DspyBridge.V1.HostLM do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
end

defmodule DspyBridge.V1.HostHello do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:tools, 2, repeated: true, type: DspyBridge.V1.HostTool)
  field(:metrics, 3, repeated: true, type: DspyBridge.V1.HostMetric)
  field(:lms, 4, repeated: true, type: DspyBridge.V1.HostLM)
end

defmodule DspyBridge.V1.HostToolResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:outcome, 0)

  field(:call_id, 1, type: :string, json_name: "callId")
  field(:output, 2, type: DspyBridge.V1.Value, oneof: 0)
  field(:error, 3, type: :string, oneof: 0)
end

defmodule DspyBridge.V1.HostMetricResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:call_id, 1, type: :string, json_name: "callId")
  field(:score, 2, type: :double)
  field(:feedback, 3, type: :string)
  field(:error, 4, type: :string)
end

defmodule DspyBridge.V1.HostLMResult do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:call_id, 1, type: :string, json_name: "callId")
  field(:text, 2, type: :string)
  field(:usage, 3, type: DspyBridge.V1.Usage)
  field(:error, 4, type: :string)
end

defmodule DspyBridge.V1.ConnectRequest do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:message, 0)

  field(:hello, 1, type: DspyBridge.V1.HostHello, oneof: 0)
  field(:tool_result, 2, type: DspyBridge.V1.HostToolResult, json_name: "toolResult", oneof: 0)

  field(:metric_result, 3,
    type: DspyBridge.V1.HostMetricResult,
    json_name: "metricResult",
    oneof: 0
  )

  field(:lm_result, 4, type: DspyBridge.V1.HostLMResult, json_name: "lmResult", oneof: 0)
end

defmodule DspyBridge.V1.HostWelcome do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:connection_id, 1, type: :string, json_name: "connectionId")
  field(:tools, 2, repeated: true, type: :string)
  field(:metrics, 3, repeated: true, type: :string)
  field(:lms, 4, repeated: true, type: :string)
end

defmodule DspyBridge.V1.HostToolCall do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:call_id, 1, type: :string, json_name: "callId")
  field(:tool, 2, type: :string)
  field(:arguments, 3, type: Google.Protobuf.Struct)
  field(:deadline, 4, type: Google.Protobuf.Timestamp)
  field(:module_id, 5, type: :string, json_name: "moduleId")
  field(:timeout_ms, 6, type: :int64, json_name: "timeoutMs")
  field(:job_id, 7, type: :string, json_name: "jobId")
end

defmodule DspyBridge.V1.HostMetricCall.InputsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.HostMetricCall.LabelsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.HostMetricCall.PredictionEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: DspyBridge.V1.Value)
end

defmodule DspyBridge.V1.HostMetricCall do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:call_id, 1, type: :string, json_name: "callId")
  field(:metric, 2, type: :string)
  field(:inputs, 3, repeated: true, type: DspyBridge.V1.HostMetricCall.InputsEntry, map: true)
  field(:labels, 4, repeated: true, type: DspyBridge.V1.HostMetricCall.LabelsEntry, map: true)

  field(:prediction, 5,
    repeated: true,
    type: DspyBridge.V1.HostMetricCall.PredictionEntry,
    map: true
  )

  field(:deadline, 6, type: Google.Protobuf.Timestamp)
  field(:job_id, 7, type: :string, json_name: "jobId")
  field(:timeout_ms, 8, type: :int64, json_name: "timeoutMs")
  field(:options, 9, type: Google.Protobuf.Struct)
end

defmodule DspyBridge.V1.HostLMCall do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:call_id, 1, type: :string, json_name: "callId")
  field(:lm, 2, type: :string)
  field(:messages, 3, repeated: true, type: Google.Protobuf.Struct)
  field(:options, 4, type: Google.Protobuf.Struct)
  field(:deadline, 5, type: Google.Protobuf.Timestamp)
  field(:timeout_ms, 6, type: :int64, json_name: "timeoutMs")
end

defmodule DspyBridge.V1.HostCancel do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:call_id, 1, type: :string, json_name: "callId")
end

defmodule DspyBridge.V1.ConnectResponse do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:message, 0)

  field(:welcome, 1, type: DspyBridge.V1.HostWelcome, oneof: 0)
  field(:tool_call, 2, type: DspyBridge.V1.HostToolCall, json_name: "toolCall", oneof: 0)
  field(:metric_call, 3, type: DspyBridge.V1.HostMetricCall, json_name: "metricCall", oneof: 0)
  field(:lm_call, 4, type: DspyBridge.V1.HostLMCall, json_name: "lmCall", oneof: 0)
  field(:cancel, 5, type: DspyBridge.V1.HostCancel, oneof: 0)
end
