defmodule DSPyBridge.SidecarTest do
  use ExUnit.Case, async: true

  alias DSPyBridge.Sidecar

  @tag timeout: 240_000
  test "supervised: killed, it is restarted; stopped with its supervisor, it is gone" do
    command = Application.fetch_env!(:dspy_bridge, :test_sidecar_command)
    port = DSPyBridge.Case.free_port()
    name = :"sidecar_#{System.unique_integer([:positive])}"
    conn = :"bridge_#{System.unique_integer([:positive])}"

    children = [
      {Sidecar,
       name: name,
       command: command,
       port: port,
       workers: 1,
       store: "memory://",
       lm: "offline",
       connection: conn}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    assert Sidecar.address(name) == "127.0.0.1:#{port}"
    assert {:ok, :serving} = DSPyBridge.health(conn)
    assert {:ok, %{pool: %{workers: 1}}} = DSPyBridge.server_info(conn)

    first = Sidecar.os_pid(name)
    first_process = Process.whereis(name)
    ref = Process.monitor(first_process)
    System.cmd("kill", ["-KILL", Integer.to_string(first)])
    assert_receive {:DOWN, ^ref, :process, _, {:sidecar_exited, _}}, 30_000

    # The supervisor starts a new sidecar; its start returns once it serves and is healthy.
    [{_, second_process, _, _}] = wait_for_restart(sup, first_process)
    second = Sidecar.os_pid(second_process)
    assert second != first
    assert {:ok, :serving} = DSPyBridge.health(conn)

    :ok = Supervisor.stop(sup)
    refute os_process_alive?(second)
  end

  @tag timeout: 240_000
  test "its owner killed without stopping it (as when the VM dies), the sidecar exits" do
    command = Application.fetch_env!(:dspy_bridge, :test_sidecar_command)

    {:ok, sidecar} =
      Sidecar.start(command: command, workers: 0, store: "memory://", lm: "offline")

    os_pid = Sidecar.os_pid(sidecar)

    # `tail --pid` exits once that process is gone: the event this test waits for.
    tail = System.find_executable("tail")

    waiter =
      Port.open({:spawn_executable, tail}, [
        :exit_status,
        args: ["--pid=#{os_pid}", "-f", "/dev/null"]
      ])

    # A brutal kill runs no `terminate/2`, so no SIGTERM is sent: the port closes, as it does
    # when the VM dies, and only the sidecar's closed stdin tells it its owner is gone.
    Process.exit(sidecar, :kill)
    assert_receive {^waiter, {:exit_status, 0}}, 120_000
    refute os_process_alive?(os_pid)
  end

  test "external: only checks the address and can start a connection" do
    address = Application.fetch_env!(:dspy_bridge, :test_address)
    conn = :"external_#{System.unique_integer([:positive])}"
    {:ok, sidecar} = Sidecar.start_link(external: address, connection: conn)
    assert Sidecar.address(sidecar) == address
    assert Sidecar.os_pid(sidecar) == nil
    assert {:ok, %{message: "x"}} = DSPyBridge.ping(conn, "x")
    GenServer.stop(sidecar)
  end

  # The supervisor restarts the child synchronously (its start returns once the sidecar is
  # healthy), so a which_children call made after it saw the exit returns the new child. The
  # exit may reach it a moment after our monitor fired: ask again, a bounded number of times.
  defp wait_for_restart(sup, old, attempts \\ 10_000) do
    case Supervisor.which_children(sup) do
      [{_, pid, _, _}] = children when is_pid(pid) and pid != old -> children
      _ when attempts > 0 -> wait_for_restart(sup, old, attempts - 1)
    end
  end

  defp os_process_alive?(os_pid) do
    {_, status} = System.cmd("kill", ["-0", Integer.to_string(os_pid)], stderr_to_stdout: true)
    status == 0
  end
end
