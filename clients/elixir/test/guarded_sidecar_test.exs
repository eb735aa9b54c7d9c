defmodule DSPyBridge.GuardedSidecarTest do
  # A sidecar of its own: a bearer token, a tiny watch queue (so a burst of writes makes a
  # watcher fall behind) and a sqlite store that outlives a restart.
  use ExUnit.Case, async: true

  import DSPyBridge.Case, only: [free_port: 0]

  alias DSPyBridge.{Error, Host, Sidecar}

  @token "elixir-test-token"

  setup_all do
    dir =
      Path.join(System.tmp_dir!(), "dspy_bridge_guarded_#{System.unique_integer([:positive])}")

    File.mkdir_p!(dir)
    {sidecar, _opts, port} = start_sidecar(dir)

    on_exit(fn ->
      if Process.alive?(sidecar), do: GenServer.stop(sidecar)
      File.rm_rf!(dir)
    end)

    %{port: port}
  end

  setup %{port: port} do
    {:ok, conn} = DSPyBridge.connect("127.0.0.1:#{port}", token: @token)
    :ok = DSPyBridge.wait_until_ready(conn, 30_000)
    on_exit(fn -> if Process.alive?(conn), do: DSPyBridge.disconnect(conn) end)
    %{conn: conn}
  end

  defp start_sidecar(dir) do
    port = free_port()

    opts = [
      command: Application.fetch_env!(:dspy_bridge, :test_sidecar_command),
      port: port,
      workers: 0,
      lm: "offline",
      store: "sqlite:///#{dir}/bridge.db",
      args: ["--auth-token", @token, "--watch-queue-size", "2", "--grace-seconds", "1"]
    ]

    {:ok, sidecar} = Sidecar.start(opts)
    {sidecar, opts, port}
  end

  @moduletag timeout: 240_000

  test "the token is sent; without it calls are UNAUTHENTICATED", %{conn: conn, port: port} do
    assert {:ok, _} = DSPyBridge.create_session(conn)
    {:ok, anonymous} = DSPyBridge.connect("127.0.0.1:#{port}")
    :ok = DSPyBridge.wait_until_ready(anonymous, 30_000)

    assert {:error, %Error{code: :unauthenticated, reason: "AUTH_REQUIRED"}} =
             DSPyBridge.create_session(anonymous)

    DSPyBridge.disconnect(anonymous)
  end

  test "a watcher that falls behind gets a resync with the current values", %{conn: conn} do
    {:ok, s} = DSPyBridge.create_session(conn)
    names = for i <- 1..12, do: "v#{i}"
    for name <- names, do: {:ok, _} = DSPyBridge.register_variable(s, name, :integer, 0)
    {:ok, _watch} = DSPyBridge.watch(s, [])

    # One atomic batch: twelve changes at once into a queue of two.
    {:ok, _} = DSPyBridge.batch_update(s, Enum.map(names, &{&1, 1}), atomic: true)

    assert_receive {:dspy_bridge, :resync, %{variables: variables, skipped_changes: skipped}},
                   30_000

    assert skipped > 0
    assert Enum.all?(variables, &(&1.value == 1 and &1.version == 2))
  end

  @tag :tmp_dir
  test "a host reconnects after the sidecar restarts and serves again", %{tmp_dir: dir} do
    {sidecar, opts, port} = start_sidecar(dir)
    {:ok, conn} = DSPyBridge.connect("127.0.0.1:#{port}", token: @token)
    :ok = DSPyBridge.wait_until_ready(conn, 30_000)
    {:ok, s} = DSPyBridge.create_session(conn)
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "text -> topic", id: "clf")
    metric = fn _call -> {:ok, 1.0, "always"} end

    {:ok, host} =
      Host.start_link(session: s, metrics: [%{name: "one", fun: metric}], notify: self())

    assert_receive {:dspy_bridge, :host_connected, %{connection_id: first, metrics: ["one"]}}
    dataset = [{%{text: "a"}, %{topic: "b"}}]
    assert {:ok, %{score: 1.0}} = DSPyBridge.evaluate(s, "clf", dataset, "host:one")

    :ok = GenServer.stop(sidecar)
    {:ok, second} = Sidecar.start(opts)

    # The host offers its names again on the new sidecar (a new connection id).
    assert_receive {:dspy_bridge, :host_connected, %{connection_id: again}}, 60_000
    assert again != first
    assert {:ok, %{score: 1.0}} = DSPyBridge.evaluate(s, "clf", dataset, "host:one")
    Host.stop(host)
    DSPyBridge.disconnect(conn)
    GenServer.stop(second)
  end
end
