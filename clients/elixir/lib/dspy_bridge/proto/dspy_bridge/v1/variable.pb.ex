defmodule DspyBridge.V1.VariableType do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:VARIABLE_TYPE_UNSPECIFIED, 0)
  field(:VARIABLE_TYPE_FLOAT, 1)
  field(:VARIABLE_TYPE_INTEGER, 2)
  field(:VARIABLE_TYPE_STRING, 3)
  field(:VARIABLE_TYPE_BOOLEAN, 4)
  field(:VARIABLE_TYPE_CHOICE, 5)
  field(:VARIABLE_TYPE_MODULE, 6)
  field(:VARIABLE_TYPE_EMBEDDING, 7)
  field(:VARIABLE_TYPE_TENSOR, 8)
  field(:VARIABLE_TYPE_JSON, 9)
end

defmodule DspyBridge.V1.VariableChangeKind do
  @moduledoc false

  use Protobuf, enum: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:VARIABLE_CHANGE_KIND_UNSPECIFIED, 0)
  field(:VARIABLE_CHANGE_KIND_INITIAL, 1)
  field(:VARIABLE_CHANGE_KIND_REGISTERED, 2)
  field(:VARIABLE_CHANGE_KIND_UPDATED, 3)
  field(:VARIABLE_CHANGE_KIND_DELETED, 4)
end

defmodule DspyBridge.V1.VariableConstraints do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:min, 1, proto3_optional: true, type: :double)
  field(:max, 2, proto3_optional: true, type: :double)
  field(:step, 3, proto3_optional: true, type: :double)
  field(:choices, 4, repeated: true, type: :string)
  field(:pattern, 5, type: :string)
  field(:min_length, 6, proto3_optional: true, type: :int64, json_name: "minLength")
  field(:max_length, 7, proto3_optional: true, type: :int64, json_name: "maxLength")
  field(:dims, 8, repeated: true, type: :int64)
  field(:dtype, 9, type: :string)
end

defmodule DspyBridge.V1.Variable.MetadataEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.Variable do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:id, 1, type: :string)
  field(:session_id, 2, type: :string, json_name: "sessionId")
  field(:name, 3, type: :string)
  field(:type, 4, type: DspyBridge.V1.VariableType, enum: true)
  field(:value, 5, type: DspyBridge.V1.Value)
  field(:constraints, 6, type: DspyBridge.V1.VariableConstraints)
  field(:description, 7, type: :string)
  field(:metadata, 8, repeated: true, type: DspyBridge.V1.Variable.MetadataEntry, map: true)
  field(:version, 9, type: :int64)
  field(:create_time, 10, type: Google.Protobuf.Timestamp, json_name: "createTime")
  field(:update_time, 11, type: Google.Protobuf.Timestamp, json_name: "updateTime")
  field(:source, 12, type: :string)
end

defmodule DspyBridge.V1.VariableHistoryEntry do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:version, 1, type: :int64)
  field(:value, 2, type: DspyBridge.V1.Value)
  field(:source, 3, type: :string)
  field(:reason, 4, type: :string)
  field(:update_time, 5, type: Google.Protobuf.Timestamp, json_name: "updateTime")
end

defmodule DspyBridge.V1.VariableChange do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:kind, 1, type: DspyBridge.V1.VariableChangeKind, enum: true)
  field(:variable, 2, type: DspyBridge.V1.Variable)
  field(:reason, 3, type: :string)
end
