defmodule DSPyBridge.WatchTest do
  use DSPyBridge.Case, async: true

  alias DSPyBridge.{Error, Sidecar, Variable}

  test "a watch delivers another process's writes to the receiver", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "temp", :float, 0.1)
    {:ok, _} = DSPyBridge.register_variable(s, "other", :float, 0.1)
    {:ok, watch} = DSPyBridge.watch(s, ["temp"], include_initial: true)

    assert_receive {:dspy_bridge, :variable, %{kind: :initial, variable: %Variable{version: 1}}},
                   30_000

    writer = Task.async(fn -> DSPyBridge.update_variable(s, "temp", 0.2, reason: "tune") end)
    assert {:ok, _} = Task.await(writer)
    {:ok, _} = DSPyBridge.update_variable(s, "other", 0.5)

    assert_receive {:dspy_bridge, :variable,
                    %{
                      kind: :updated,
                      reason: "tune",
                      variable: %Variable{name: "temp", value: 0.2}
                    }},
                   30_000

    :ok = DSPyBridge.unwatch(watch)
    refute Process.alive?(watch)
    refute_received {:dspy_bridge, :variable, %{variable: %Variable{name: "other"}}}
  end

  test "a whole-session watch sees registrations and ends with session_ended", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "first", :integer, 1)
    receiver = self()
    {:ok, watch} = DSPyBridge.watch(s, [], to: receiver, include_initial: true)
    ref = Process.monitor(watch)
    assert_receive {:dspy_bridge, :variable, %{kind: :initial}}, 30_000
    {:ok, _} = DSPyBridge.register_variable(s, "second", :integer, 2)

    assert_receive {:dspy_bridge, :variable,
                    %{kind: :registered, variable: %Variable{name: "second"}}},
                   30_000

    :ok = DSPyBridge.delete_session(s)
    assert_receive {:dspy_bridge, :session_ended, "deleted"}, 30_000
    assert_receive {:DOWN, ^ref, :process, ^watch, :normal}, 30_000
  end

  test "a watch that cannot start is an error", %{conn: conn, session: s} do
    assert {:error, %Error{code: :not_found, reason: "VARIABLE_NOT_FOUND"}} =
             DSPyBridge.watch(s, ["ghost"])

    gone = DSPyBridge.session(conn, "ses_gone")
    assert {:error, %Error{code: :not_found}} = DSPyBridge.watch(gone, [])
    assert mailbox() == []
  end

  test "a write right after watch/3 returns is never missed", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "k", :integer, 0)

    for version <- 2..11 do
      {:ok, watch} = DSPyBridge.watch(s, ["k"])
      {:ok, _} = DSPyBridge.update_variable(s, "k", version)

      assert_receive {:dspy_bridge, :variable, %{kind: :updated, variable: %{version: ^version}}},
                     30_000

      DSPyBridge.unwatch(watch)
    end
  end

  test "a watch stops when its receiver exits", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "v", :integer, 1)
    parent = self()

    receiver =
      spawn(fn ->
        {:ok, watch} = DSPyBridge.watch(s, ["v"], include_initial: true)
        send(parent, {:watch, watch})

        receive do
          {:dspy_bridge, :variable, _} -> send(parent, :live)
        end

        receive do
          :exit -> :ok
        end
      end)

    assert_receive {:watch, watch}, 30_000
    assert_receive :live, 30_000
    ref = Process.monitor(watch)
    send(receiver, :exit)
    assert_receive {:DOWN, ^ref, :process, ^watch, :normal}, 30_000
  end

  @tag timeout: 240_000
  @tag :tmp_dir
  test "a draining sidecar: the watch reconnects and resends current values",
       %{tmp_dir: dir} do
    port = free_port()
    command = Application.fetch_env!(:dspy_bridge, :test_sidecar_command)

    sidecar_opts = [
      command: command,
      port: port,
      workers: 0,
      lm: "offline",
      store: "sqlite:///#{dir}/bridge.db",
      args: ["--grace-seconds", "1"]
    ]

    {:ok, first} = Sidecar.start_link(sidecar_opts)
    {:ok, conn} = DSPyBridge.connect("127.0.0.1:#{port}")
    :ok = DSPyBridge.wait_until_ready(conn, 30_000)
    {:ok, s} = DSPyBridge.create_session(conn)
    {:ok, _} = DSPyBridge.register_variable(s, "n", :integer, 1)
    {:ok, watch} = DSPyBridge.watch(s, ["n"], include_initial: true)
    assert_receive {:dspy_bridge, :variable, %{kind: :initial, variable: %{version: 1}}}, 30_000

    :ok = GenServer.stop(first)
    {:ok, second} = Sidecar.start_link(sidecar_opts)
    :ok = DSPyBridge.wait_until_ready(conn, 60_000)

    # The watch is back: the current value again as :initial, then new writes.
    assert_receive {:dspy_bridge, :variable, %{kind: :initial, variable: %{version: 1}}}, 60_000
    assert Process.alive?(watch)
    {:ok, _} = DSPyBridge.update_variable(s, "n", 2)
    assert_receive {:dspy_bridge, :variable, %{kind: :updated, variable: %{value: 2}}}, 30_000

    DSPyBridge.unwatch(watch)
    DSPyBridge.disconnect(conn)
    GenServer.stop(second)
  end
end
