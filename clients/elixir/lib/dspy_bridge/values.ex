defmodule DSPyBridge.Values do
  @moduledoc """
  Conversion between plain Elixir terms and the sidecar's typed `Value`s.

  | Elixir                        | `Value` kind      |
  |-------------------------------|-------------------|
  | `true`, `false`               | `bool_value`      |
  | integer                       | `int_value` (64-bit) |
  | float                         | `float_value`     |
  | string                        | `string_value`    |
  | atom                          | `string_value` (its name) |
  | `%DSPyBridge.Tensor{}`        | `tensor_value`    |
  | `%Nx.Tensor{}` (with `:nx`)   | `tensor_value`    |
  | `nil`, list, map              | `json_value`      |
  | `{:json, term}`               | `json_value`, even for a scalar |

  Back from the sidecar, ints stay ints: an `int_value` is an integer and a whole JSON number
  is an integer too (JSON has a single number type), so `%{"n" => 3}` round-trips as `3`, not
  `3.0`. Map keys in JSON come back as strings.
  """

  alias DspyBridge.V1.Value
  alias Google.Protobuf.{ListValue, Struct}

  @int64_min -9_223_372_036_854_775_808
  @int64_max 9_223_372_036_854_775_807

  @typedoc "A plain value as passed in and returned by this library."
  @type t ::
          nil
          | boolean()
          | integer()
          | float()
          | String.t()
          | DSPyBridge.Tensor.t()
          | [t()]
          | %{optional(String.t()) => t()}

  @doc "The `Value` for an Elixir term. Raises `ArgumentError` for terms with no mapping."
  @spec to_value(term()) :: Value.t()
  def to_value(%Value{} = value), do: value
  def to_value(b) when is_boolean(b), do: %Value{kind: {:bool_value, b}}

  def to_value(i) when is_integer(i) do
    if i < @int64_min or i > @int64_max,
      do: raise(ArgumentError, "integer #{i} is outside the 64-bit range")

    %Value{kind: {:int_value, i}}
  end

  def to_value(f) when is_float(f), do: %Value{kind: {:float_value, f}}
  def to_value(s) when is_binary(s), do: %Value{kind: {:string_value, s}}

  def to_value(%DSPyBridge.Tensor{} = t),
    do: %Value{
      kind: {:tensor_value, %DspyBridge.V1.Tensor{dtype: t.dtype, shape: t.shape, data: t.data}}
    }

  if Code.ensure_loaded?(Nx) do
    def to_value(%Nx.Tensor{} = t), do: to_value(DSPyBridge.Tensor.from_nx(t))
  end

  def to_value({:json, term}), do: %Value{kind: {:json_value, to_json(term)}}
  def to_value(nil), do: %Value{kind: {:json_value, to_json(nil)}}
  def to_value(a) when is_atom(a), do: %Value{kind: {:string_value, Atom.to_string(a)}}
  def to_value(l) when is_list(l), do: %Value{kind: {:json_value, to_json(l)}}

  def to_value(m) when is_map(m) and not is_struct(m),
    do: %Value{kind: {:json_value, to_json(m)}}

  def to_value(other), do: raise(ArgumentError, "no Value mapping for #{inspect(other)}")

  @doc "The Elixir term for a `Value` (`nil` for an unset one)."
  @spec from_value(Value.t() | nil) :: t()
  def from_value(nil), do: nil
  def from_value(%Value{kind: nil}), do: nil
  def from_value(%Value{kind: {:json_value, json}}), do: from_json(json)

  def from_value(%Value{kind: {:tensor_value, t}}),
    do: %DSPyBridge.Tensor{dtype: t.dtype, shape: t.shape, data: t.data}

  def from_value(%Value{kind: {_scalar, v}}), do: v

  @doc "A map of `Value`s for a map of terms (keys may be atoms or strings)."
  @spec to_value_map(map() | keyword()) :: %{String.t() => Value.t()}
  def to_value_map(terms), do: Map.new(terms, fn {k, v} -> {key(k), to_value(v)} end)

  @doc "A map of terms for a map of `Value`s."
  @spec from_value_map(%{String.t() => Value.t()}) :: %{String.t() => t()}
  def from_value_map(values), do: Map.new(values, fn {k, v} -> {k, from_value(v)} end)

  @doc "A `google.protobuf.Value` for a JSON-like term."
  @spec to_json(term()) :: Google.Protobuf.Value.t()
  def to_json(nil), do: %Google.Protobuf.Value{kind: {:null_value, :NULL_VALUE}}
  def to_json(b) when is_boolean(b), do: %Google.Protobuf.Value{kind: {:bool_value, b}}
  def to_json(n) when is_number(n), do: %Google.Protobuf.Value{kind: {:number_value, n * 1.0}}
  def to_json(s) when is_binary(s), do: %Google.Protobuf.Value{kind: {:string_value, s}}

  def to_json(a) when is_atom(a),
    do: %Google.Protobuf.Value{kind: {:string_value, Atom.to_string(a)}}

  def to_json(l) when is_list(l),
    do: %Google.Protobuf.Value{kind: {:list_value, %ListValue{values: Enum.map(l, &to_json/1)}}}

  def to_json(m) when is_map(m) and not is_struct(m),
    do: %Google.Protobuf.Value{kind: {:struct_value, to_struct(m)}}

  def to_json(other), do: raise(ArgumentError, "no JSON mapping for #{inspect(other)}")

  @doc "A `google.protobuf.Struct` for a map (`nil` stays `nil`)."
  @spec to_struct(map() | keyword() | nil) :: Struct.t() | nil
  def to_struct(nil), do: nil
  def to_struct(m), do: %Struct{fields: Map.new(m, fn {k, v} -> {key(k), to_json(v)} end)}

  @doc "The term for a `google.protobuf.Value`; whole numbers become integers."
  @spec from_json(Google.Protobuf.Value.t() | nil) :: t()
  def from_json(nil), do: nil
  def from_json(%Google.Protobuf.Value{kind: nil}), do: nil
  def from_json(%Google.Protobuf.Value{kind: {:null_value, _}}), do: nil
  def from_json(%Google.Protobuf.Value{kind: {:number_value, n}}), do: number(n)
  def from_json(%Google.Protobuf.Value{kind: {:struct_value, s}}), do: from_struct(s)

  def from_json(%Google.Protobuf.Value{kind: {:list_value, %ListValue{values: vs}}}),
    do: Enum.map(vs, &from_json/1)

  def from_json(%Google.Protobuf.Value{kind: {_kind, v}}), do: v

  @doc "The map for a `google.protobuf.Struct` (`nil` gives `%{}`)."
  @spec from_struct(Struct.t() | nil) :: %{String.t() => t()}
  def from_struct(nil), do: %{}

  def from_struct(%Struct{fields: fields}),
    do: Map.new(fields, fn {k, v} -> {k, from_json(v)} end)

  # JSON has one number type: a whole one (within 2^53, where doubles are exact) is an integer.
  defp number(n) when is_float(n) and n == trunc(n) and abs(n) <= 9_007_199_254_740_992,
    do: trunc(n)

  defp number(n), do: n

  @doc false
  def key(k) when is_binary(k), do: k
  def key(k) when is_atom(k), do: Atom.to_string(k)
  def key(k), do: raise(ArgumentError, "map keys must be strings or atoms, got #{inspect(k)}")
end
