defmodule DspyBridge.V1.Value do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  oneof(:kind, 0)

  field(:float_value, 1, type: :double, json_name: "floatValue", oneof: 0)
  field(:int_value, 2, type: :int64, json_name: "intValue", oneof: 0)
  field(:string_value, 3, type: :string, json_name: "stringValue", oneof: 0)
  field(:bool_value, 4, type: :bool, json_name: "boolValue", oneof: 0)
  field(:json_value, 5, type: Google.Protobuf.Value, json_name: "jsonValue", oneof: 0)
  field(:tensor_value, 6, type: DspyBridge.V1.Tensor, json_name: "tensorValue", oneof: 0)
end

defmodule DspyBridge.V1.Tensor do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:dtype, 1, type: :string)
  field(:shape, 2, repeated: true, type: :int64)
  field(:data, 3, type: :bytes)
end
