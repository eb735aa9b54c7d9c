defmodule DspyBridge.V1.Session.MetadataEntry do
  @moduledoc false

  use Protobuf, map: true, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:key, 1, type: :string)
  field(:value, 2, type: :string)
end

defmodule DspyBridge.V1.Session do
  @moduledoc false

  use Protobuf, protoc_gen_elixir_version: "0.14.1", syntax: :proto3

  field(:session_id, 1, type: :string, json_name: "sessionId")
  field(:metadata, 2, repeated: true, type: DspyBridge.V1.Session.MetadataEntry, map: true)
  field(:ttl_seconds, 3, type: :int64, json_name: "ttlSeconds")
  field(:create_time, 4, type: Google.Protobuf.Timestamp, json_name: "createTime")
  field(:expire_time, 5, type: Google.Protobuf.Timestamp, json_name: "expireTime")
  field(:variable_count, 6, type: :int32, json_name: "variableCount")
  field(:module_count, 7, type: :int32, json_name: "moduleCount")
  field(:lm, 8, type: DspyBridge.V1.LMConfig)
end
