defmodule DspyBridge.V1.LMConfig.OptionsEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.LMConfig do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:model, 1, type: :string)
  field(:api_base, 2, type: :string, json_name: "apiBase")
  field(:api_key_env, 3, type: :string, json_name: "apiKeyEnv")
  field(:options, 4, repeated: true, type: DspyBridge.V1.LMConfig.OptionsEntry, map: true)
end
