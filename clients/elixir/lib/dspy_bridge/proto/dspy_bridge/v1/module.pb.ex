defmodule DspyBridge.V1.FieldRole do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:FIELD_ROLE_UNSPECIFIED, 0)
  field(:FIELD_ROLE_INPUT, 1)
  field(:FIELD_ROLE_OUTPUT, 2)
end

defmodule DspyBridge.V1.SignatureField do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:name, 1, type: :string)
  field(:role, 2, type: DspyBridge.V1.FieldRole, enum: true)
  field(:type, 3, type: :string)
  field(:description, 4, type: :string)
end

defmodule DspyBridge.V1.Signature do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:text, 1, type: :string)
  field(:fields, 2, repeated: true, type: DspyBridge.V1.SignatureField)
  field(:instructions, 3, type: :string)
end

defmodule DspyBridge.V1.Module.VariableBindingsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.Module do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:module_id, 1, type: :string, json_name: "moduleId")
  field(:session_id, 2, type: :string, json_name: "sessionId")
  field(:module_type, 3, type: :string, json_name: "moduleType")
  field(:signature, 4, type: DspyBridge.V1.Signature)
  field(:config, 5, type: Google.Protobuf.Struct)

  field(:variable_bindings, 6,
    repeated: true,
    type: DspyBridge.V1.Module.VariableBindingsEntry,
    json_name: "variableBindings",
    map: true
  )

  field(:lm, 7, type: DspyBridge.V1.LMConfig)
  field(:version, 8, type: :int64)
  field(:create_time, 9, type: Google.Protobuf.Timestamp, json_name: "createTime")
  field(:update_time, 10, type: Google.Protobuf.Timestamp, json_name: "updateTime")
  field(:demo_count, 11, type: :int32, json_name: "demoCount")
end

defmodule DspyBridge.V1.Usage do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:lm_calls, 1, type: :int64, json_name: "lmCalls")
  field(:prompt_tokens, 2, type: :int64, json_name: "promptTokens")
  field(:completion_tokens, 3, type: :int64, json_name: "completionTokens")
  field(:cost_usd, 4, type: :double, json_name: "costUsd")
end

defmodule DspyBridge.V1.VariableUsage do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:value, 1, type: DspyBridge.V1.Value)
  field(:version, 2, type: :int64)
  field(:overridden, 3, type: :bool)
end

defmodule DspyBridge.V1.LMCallTrace do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:model, 1, type: :string)
  field(:messages, 2, repeated: true, type: Google.Protobuf.Struct)
  field(:completions, 3, repeated: true, type: :string)
  field(:options, 4, type: Google.Protobuf.Struct)
end

defmodule DspyBridge.V1.ExecuteOptions do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:timeout_ms, 1, type: :int64, json_name: "timeoutMs")
  field(:include_trace, 2, type: :bool, json_name: "includeTrace")
end
