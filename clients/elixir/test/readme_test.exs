defmodule DSPyBridge.ReadmeTest do
  # Runs the README's quickstart block verbatim: it starts its own sidecar (by name, `:bridge`).
  use ExUnit.Case, async: false

  @readme Path.expand("../README.md", __DIR__)

  @tag timeout: 180_000
  test "the README quickstart works as written" do
    [_, block] =
      Regex.run(~r/<!-- quickstart:[^>]*-->\n```elixir\n(.*?)```/s, File.read!(@readme))

    # `dspy-bridge` on the PATH, as the README asks of the reader.
    command = Application.fetch_env!(:dspy_bridge, :test_sidecar_command)
    path = System.get_env("PATH")
    System.put_env("PATH", Path.dirname(command) <> ":" <> path)

    try do
      {result, binding} = Code.eval_string(block)
      assert result == "2"
      assert {:ok, sidecar} = Keyword.fetch(binding, :_sidecar)
      GenServer.stop(sidecar)
    after
      System.put_env("PATH", path)
    end
  end
end
