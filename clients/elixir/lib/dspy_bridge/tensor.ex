defmodule DSPyBridge.Tensor do
  @moduledoc """
  A dense n-dimensional array as the sidecar stores it: `dtype`, `shape` and the raw
  row-major, little-endian bytes in `data`.

      iex> t = DSPyBridge.Tensor.from_list([[1.0, 2.0], [3.0, 4.0]], "float32")
      iex> t.shape
      [2, 2]
      iex> DSPyBridge.Tensor.to_list(t)
      [[1.0, 2.0], [3.0, 4.0]]

  Element types: `float16`, `float32`, `float64`, `int8`, `int16`, `int32`, `int64`,
  `uint8`, `bool`. With the optional `:nx` dependency, `to_nx/1` and `from_nx/1` convert to
  and from `Nx.Tensor`, and an `Nx.Tensor` can be passed wherever a value goes.
  """

  @enforce_keys [:dtype, :shape, :data]
  defstruct [:dtype, :shape, :data]

  @type t :: %__MODULE__{dtype: String.t(), shape: [non_neg_integer()], data: binary()}

  @dtypes ~w(float16 float32 float64 int8 int16 int32 int64 uint8 bool)

  @doc "The element types the sidecar accepts."
  @spec dtypes() :: [String.t()]
  def dtypes, do: @dtypes

  @doc """
  A tensor from a (nested) list of numbers with the given element type. The shape is read from
  the nesting, which must be regular. Raises `ArgumentError` for ragged lists, an unknown dtype
  or values that do not fit it.
  """
  @spec from_list(list(), String.t()) :: t()
  def from_list(values, dtype \\ "float32") when is_list(values) do
    check_dtype!(dtype)
    shape = shape_of(values)
    flat = flatten!(values, shape)
    data = for x <- flat, into: <<>>, do: encode(dtype, x)
    %__MODULE__{dtype: dtype, shape: shape, data: data}
  end

  @doc "The elements as a nested list shaped like the tensor (a bare number for shape `[]`)."
  @spec to_list(t()) :: list() | number() | boolean()
  def to_list(%__MODULE__{dtype: dtype, shape: shape, data: data}) do
    check_dtype!(dtype)
    flat = decode_all(dtype, data, [])

    case shape do
      [] -> hd(flat)
      _ -> nest(flat, shape)
    end
  end

  @doc "Number of elements (the product of the shape)."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{shape: shape}), do: Enum.reduce(shape, 1, &*/2)

  if Code.ensure_loaded?(Nx) do
    @nx_types %{
      "float16" => {:f, 16},
      "float32" => {:f, 32},
      "float64" => {:f, 64},
      "int8" => {:s, 8},
      "int16" => {:s, 16},
      "int32" => {:s, 32},
      "int64" => {:s, 64},
      "uint8" => {:u, 8},
      # Nx has no boolean type: one byte per element, 0 or 1, as the sidecar stores them.
      "bool" => {:u, 8}
    }

    @doc """
    The tensor as an `Nx.Tensor` (available when the optional `:nx` dependency is present).
    A `bool` tensor becomes `{:u, 8}` zeros and ones.
    """
    @spec to_nx(t()) :: Nx.Tensor.t()
    def to_nx(%__MODULE__{dtype: dtype, shape: shape, data: data}) do
      type = Map.get(@nx_types, dtype) || raise ArgumentError, "unknown tensor dtype #{dtype}"
      data |> Nx.from_binary(type) |> Nx.reshape(List.to_tuple(shape))
    end

    @doc """
    A tensor from an `Nx.Tensor` of a type the sidecar stores (floats of 16, 32 or 64 bits,
    signed integers, `{:u, 8}`); others raise `ArgumentError`.
    """
    @spec from_nx(Nx.Tensor.t()) :: t()
    def from_nx(%Nx.Tensor{} = tensor) do
      type = Nx.type(tensor)

      dtype =
        Enum.find_value(@nx_types, fn {name, t} -> if t == type and name != "bool", do: name end) ||
          raise ArgumentError, "Nx type #{inspect(type)} has no sidecar dtype"

      # Nx binaries are in the machine's byte order: little-endian on the platforms BEAM
      # ships for, as the sidecar expects.
      %__MODULE__{
        dtype: dtype,
        shape: Tuple.to_list(Nx.shape(tensor)),
        data: Nx.to_binary(tensor)
      }
    end
  end

  defp check_dtype!(dtype) do
    unless dtype in @dtypes do
      raise ArgumentError, "unknown tensor dtype #{inspect(dtype)}; one of #{inspect(@dtypes)}"
    end
  end

  defp shape_of([first | _] = list) when is_list(first), do: [length(list) | shape_of(first)]
  defp shape_of(list) when is_list(list), do: [length(list)]

  defp flatten!(values, [n]) when length(values) == n do
    Enum.each(values, fn v ->
      if is_list(v), do: raise(ArgumentError, "ragged tensor list")
    end)

    values
  end

  defp flatten!(values, [n | inner]) when length(values) == n do
    Enum.flat_map(values, fn
      row when is_list(row) -> flatten!(row, inner)
      _ -> raise ArgumentError, "ragged tensor list"
    end)
  end

  defp flatten!(_values, _shape), do: raise(ArgumentError, "ragged tensor list")

  defp encode("float16", x) when is_number(x), do: <<x::float-16-little>>
  defp encode("float32", x) when is_number(x), do: <<x::float-32-little>>
  defp encode("float64", x) when is_number(x), do: <<x::float-64-little>>
  defp encode("bool", x) when is_boolean(x), do: if(x, do: <<1>>, else: <<0>>)
  defp encode(dtype, x) when is_integer(x), do: encode_int(dtype, x)

  defp encode(dtype, x),
    do: raise(ArgumentError, "#{inspect(x)} is not a valid #{dtype} element")

  defp encode_int(dtype, x) do
    {bits, signed?} = int_format(dtype)

    {low, high} =
      if signed?,
        do: {-Bitwise.bsl(1, bits - 1), Bitwise.bsl(1, bits - 1) - 1},
        else: {0, Bitwise.bsl(1, bits) - 1}

    if x < low or x > high, do: raise(ArgumentError, "#{x} does not fit #{dtype}")
    if signed?, do: <<x::signed-little-size(bits)>>, else: <<x::unsigned-little-size(bits)>>
  end

  defp int_format("int8"), do: {8, true}
  defp int_format("int16"), do: {16, true}
  defp int_format("int32"), do: {32, true}
  defp int_format("int64"), do: {64, true}
  defp int_format("uint8"), do: {8, false}
  defp int_format(dtype), do: raise(ArgumentError, "integers do not fit #{dtype}")

  defp decode_all(_dtype, <<>>, acc), do: Enum.reverse(acc)

  defp decode_all("float16", <<x::float-16-little, rest::binary>>, acc),
    do: decode_all("float16", rest, [x | acc])

  defp decode_all("float32", <<x::float-32-little, rest::binary>>, acc),
    do: decode_all("float32", rest, [x | acc])

  defp decode_all("float64", <<x::float-64-little, rest::binary>>, acc),
    do: decode_all("float64", rest, [x | acc])

  defp decode_all("bool", <<x, rest::binary>>, acc), do: decode_all("bool", rest, [x != 0 | acc])

  defp decode_all(dtype, data, acc) do
    {bits, signed?} = int_format(dtype)

    case {signed?, data} do
      {true, <<x::signed-little-size(bits), rest::binary>>} ->
        decode_all(dtype, rest, [x | acc])

      {false, <<x::unsigned-little-size(bits), rest::binary>>} ->
        decode_all(dtype, rest, [x | acc])

      _ ->
        raise ArgumentError, "tensor data is not a whole number of #{dtype} elements"
    end
  end

  defp nest(flat, [_n]), do: flat

  defp nest(flat, [_n | inner]) do
    row = Enum.reduce(inner, 1, &*/2)
    flat |> Enum.chunk_every(row) |> Enum.map(&nest(&1, inner))
  end
end
