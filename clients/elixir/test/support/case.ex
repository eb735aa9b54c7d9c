defmodule DSPyBridge.Case do
  @moduledoc false
  # Tests get a connection to the suite's sidecar and a fresh session.
  use ExUnit.CaseTemplate

  using do
    quote do
      import DSPyBridge.Case
    end
  end

  setup do
    {:ok, conn} = DSPyBridge.connect(Application.fetch_env!(:dspy_bridge, :test_address))
    :ok = DSPyBridge.wait_until_ready(conn, 30_000)
    {:ok, session} = DSPyBridge.create_session(conn)
    on_exit(fn -> DSPyBridge.disconnect(conn) end)
    %{conn: conn, session: session}
  end

  @doc "A loopback port nothing listens on (bound, then released)."
  def free_port do
    {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(socket)
    :gen_tcp.close(socket)
    port
  end

  @doc "The calling process's mailbox."
  def mailbox, do: elem(Process.info(self(), :messages), 1)
end
