defmodule DSPyBridge.ConnectionTest do
  use DSPyBridge.Case, async: true

  alias DSPyBridge.{Error, Sidecar}

  @tag timeout: 180_000
  test "fails fast while disconnected, connects when the sidecar appears, fails fast after" do
    port = free_port()
    {:ok, conn} = DSPyBridge.connect("127.0.0.1:#{port}")

    {micros, result} = :timer.tc(fn -> DSPyBridge.ping(conn) end)
    assert {:error, %Error{code: :unavailable}} = result
    assert micros < 1_000_000
    assert {:error, %Error{code: :unavailable}} = DSPyBridge.wait_until_ready(conn, 200)

    command = Application.fetch_env!(:dspy_bridge, :test_sidecar_command)
    {:ok, sidecar} = Sidecar.start_link(command: command, port: port, workers: 0, lm: "offline")
    assert :ok = DSPyBridge.wait_until_ready(conn, 60_000)
    assert {:ok, %{message: "up"}} = DSPyBridge.ping(conn, "up")

    :ok = GenServer.stop(sidecar)
    assert {:error, %Error{code: :unavailable}} = DSPyBridge.ping(conn)
    assert {:error, %Error{code: :unavailable}} = DSPyBridge.ping(conn)
    assert mailbox() == []
    DSPyBridge.disconnect(conn)
  end

  test "a call's timeout is the execution's timeout_ms on the sidecar", %{session: s} do
    {:ok, _} = DSPyBridge.configure_lm(s, "offline", options: %{latency_ms: 5_000})
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "question -> answer", id: "slow")

    assert {:error, %Error{code: :deadline_exceeded, reason: "DEADLINE_EXCEEDED", metadata: meta}} =
             DSPyBridge.execute(s, "slow", %{question: "q"}, timeout: 300)

    # The sidecar counts from its own clock: the deadline that remains, at most the 300 ms sent.
    assert String.to_integer(meta["timeout_ms"]) in 1..300
    assert mailbox() == []
  end

  test "a server that never answers: the call times out here and leaves no messages" do
    {:ok, listen} = :gen_tcp.listen(0, ip: {127, 0, 0, 1}, active: false, reuseaddr: true)
    {:ok, port} = :inet.port(listen)
    parent = self()

    # Accepts, answers the HTTP/2 handshake with an empty SETTINGS frame, then stays silent.
    silent =
      spawn_link(fn ->
        {:ok, socket} = :gen_tcp.accept(listen)
        :ok = :gen_tcp.send(socket, <<0::24, 4, 0, 0::32>>)
        send(parent, :accepted)

        receive do
          :stop -> :gen_tcp.close(socket)
        end
      end)

    {:ok, conn} = DSPyBridge.connect("127.0.0.1:#{port}")
    assert :ok = DSPyBridge.wait_until_ready(conn, 10_000)
    assert_receive :accepted, 10_000

    assert {:error, %Error{code: :deadline_exceeded}} = DSPyBridge.ping(conn, "", timeout: 50)
    assert mailbox() == []
    send(silent, :stop)
    DSPyBridge.disconnect(conn)
  end

  test "calls and watches from many processes leave no stray messages", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "question -> answer", id: "qa")

    tasks =
      for i <- 1..32 do
        Task.async(fn ->
          {:ok, _} = DSPyBridge.execute(s, "qa", %{question: "q#{i}"})
          {:error, %Error{}} = DSPyBridge.get_variable(s, "missing")
          {:ok, stream} = DSPyBridge.execute_stream(s, "qa", %{question: "s#{i}"})
          _ = Enum.take(stream, 1)
          mailbox()
        end)
      end

    assert Enum.all?(Task.await_many(tasks, 60_000), &(&1 == []))
  end

  test "more concurrent calls than the sidecar's stream limit all succeed", %{conn: conn} do
    # The sidecar allows fewer concurrent HTTP/2 streams per connection than this; the rest
    # wait in the connection for a free stream.
    results =
      1..400
      |> Task.async_stream(fn i -> DSPyBridge.ping(conn, "#{i}") end,
        max_concurrency: 400,
        timeout: 60_000
      )
      |> Enum.map(fn {:ok, result} -> result end)

    assert Enum.all?(results, &match?({:ok, _}, &1))
    assert mailbox() == []
  end
end
