defmodule DSPyBridge.ValuesTest do
  use ExUnit.Case, async: true

  alias DSPyBridge.{Tensor, Values}
  doctest DSPyBridge.Tensor

  test "scalars map to their own kinds and back" do
    for term <- [true, false, 42, -7, 1.5, "text"] do
      assert Values.from_value(Values.to_value(term)) === term
    end
  end

  test "whole JSON numbers come back as integers, fractions as floats" do
    json = %{"n" => 3, "xs" => [1, 2.5, nil, "a", true], "nested" => %{"k" => -4}}
    assert Values.from_value(Values.to_value(json)) === json
  end

  test "atom keys and atom values become strings" do
    assert Values.from_value(Values.to_value(%{mode: :fast})) == %{"mode" => "fast"}
    assert Values.from_value(Values.to_value(:fast)) == "fast"
  end

  test "{:json, term} sends a scalar as JSON" do
    assert %{kind: {:json_value, _}} = Values.to_value({:json, 3})
  end

  test "integers outside 64 bits and unmappable terms are refused" do
    assert_raise ArgumentError, fn -> Values.to_value(Bitwise.bsl(1, 64)) end
    assert_raise ArgumentError, fn -> Values.to_value(self()) end
  end

  test "tensors of every dtype round-trip" do
    cases = [
      {"float32", [[1.0, 2.0], [3.0, 4.5]]},
      {"float64", [0.1, 0.2]},
      {"float16", [1.5, -2.0]},
      {"int8", [-128, 127]},
      {"int16", [-300, 300]},
      {"int32", [[1], [2], [3]]},
      {"int64", [Bitwise.bsl(1, 40)]},
      {"uint8", [0, 255]},
      {"bool", [true, false]}
    ]

    for {dtype, list} <- cases do
      tensor = Tensor.from_list(list, dtype)
      assert Values.from_value(Values.to_value(tensor)) == tensor
      assert Tensor.to_list(tensor) == list
    end
  end

  test "ragged lists and out-of-range elements are refused" do
    assert_raise ArgumentError, fn -> Tensor.from_list([[1.0], [1.0, 2.0]]) end
    assert_raise ArgumentError, fn -> Tensor.from_list([256], "uint8") end
    assert_raise ArgumentError, fn -> Tensor.from_list([1.0], "complex64") end
  end

  test "Nx tensors convert both ways and go as values" do
    nx = Nx.tensor([[1.5, 2.0], [3.0, 4.0]], type: {:f, 32})
    tensor = Tensor.from_nx(nx)
    assert %Tensor{dtype: "float32", shape: [2, 2]} = tensor
    assert Tensor.to_list(tensor) == [[1.5, 2.0], [3.0, 4.0]]
    assert Nx.to_list(Tensor.to_nx(tensor)) == Nx.to_list(nx)
    assert Values.from_value(Values.to_value(nx)) == tensor

    ints = Nx.tensor([1, -2, 3], type: {:s, 64})
    assert %Tensor{dtype: "int64", shape: [3]} = Tensor.from_nx(ints)
    assert Nx.to_list(Tensor.to_nx(Tensor.from_list([true, false], "bool"))) == [1, 0]
    assert_raise ArgumentError, fn -> Tensor.from_nx(Nx.tensor([1], type: {:u, 16})) end
  end
end
