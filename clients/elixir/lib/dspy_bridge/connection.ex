defmodule DSPyBridge.Connection do
  @moduledoc """
  One HTTP/2 connection to a sidecar, kept open by a process that reconnects with backoff.

  Start it in your supervision tree, or with `DSPyBridge.connect/2`:

      children = [
        {DSPyBridge.Connection, name: MyApp.Bridge, address: "127.0.0.1:50051"}
      ]

  Then pass `MyApp.Bridge` (or the pid) wherever a connection is expected.

  Options:

    * `:address` - `"host:port"` of the sidecar (default `"127.0.0.1:50051"`).
    * `:name` - a name to register the process under.
    * `:timeout` - default per-call timeout in milliseconds (default `30_000`; `:infinity`
      for none). Calls take their own `:timeout` option too; it is sent to the sidecar as the
      gRPC deadline and, for executions, as `timeout_ms`.
    * `:token` - a bearer token sent with every call (the sidecar's `--auth-token`).
    * `:headers` - extra request headers, as `{name, value}` string pairs.
    * `:connect_timeout` - milliseconds for one connection attempt (default `5_000`).
    * `:max_backoff` - the longest wait between reconnection attempts, in ms (default `2_000`).

  While the connection is down, calls fail at once with `%DSPyBridge.Error{code: :unavailable}`
  instead of waiting; `DSPyBridge.wait_until_ready/2` waits for it to be up.
  """

  use GenServer
  require Logger

  alias DSPyBridge.Error

  @type t :: GenServer.server()

  @doc "Starts a connection process (see the module doc for the options)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    case Keyword.fetch(opts, :name) do
      {:ok, name} -> GenServer.start_link(__MODULE__, opts, name: name)
      :error -> GenServer.start_link(__MODULE__, opts)
    end
  end

  @doc false
  def child_spec(opts) do
    # Transient: a crash restarts it, `close/1` does not.
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      restart: :transient
    }
  end

  @doc false
  # The gun process and call defaults when the connection is up; `:unavailable` otherwise.
  @spec checkout(t()) :: {:ok, pid(), map()} | {:error, Error.t()}
  def checkout(conn) do
    GenServer.call(conn, :checkout)
  catch
    :exit, reason ->
      {:error, Error.client(:unavailable, "no connection process: #{inspect(reason)}")}
  end

  @doc "Waits until the connection is up, at most `timeout` ms. `:ok` or `{:error, %Error{}}`."
  @spec wait_until_ready(t(), timeout()) :: :ok | {:error, Error.t()}
  def wait_until_ready(conn, timeout \\ 10_000) do
    ref = make_ref()

    case GenServer.call(conn, {:when_up, self(), ref}) do
      :up ->
        :ok

      :waiting ->
        receive do
          {^ref, :up} -> :ok
        after
          timeout ->
            GenServer.cast(conn, {:forget, ref})

            # The connection may have come up as the wait ended: drop that late reply.
            receive do
              {^ref, :up} -> :ok
            after
              0 ->
                {:error,
                 Error.client(:unavailable, "not connected to the sidecar within #{timeout} ms")}
            end
        end
    end
  catch
    :exit, reason ->
      {:error, Error.client(:unavailable, "no connection process: #{inspect(reason)}")}
  end

  @doc "Closes the connection and stops the process."
  @spec close(t()) :: :ok
  def close(conn), do: GenServer.stop(conn, :normal)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    {host, port} = parse_address(Keyword.get(opts, :address, "127.0.0.1:50051"))
    token = Keyword.get(opts, :token)
    auth = if token, do: [{"authorization", "Bearer " <> token}], else: []

    state = %{
      host: host,
      port: port,
      gun: nil,
      mref: nil,
      up?: false,
      waiters: %{},
      backoff: 50,
      max_backoff: Keyword.get(opts, :max_backoff, 2_000),
      connect_timeout: Keyword.get(opts, :connect_timeout, 5_000),
      defaults: %{
        timeout: Keyword.get(opts, :timeout, 30_000),
        headers: auth ++ Keyword.get(opts, :headers, [])
      }
    }

    {:ok, open(state)}
  end

  @impl true
  def handle_call(:checkout, _from, %{up?: true} = s), do: {:reply, {:ok, s.gun, s.defaults}, s}

  def handle_call(:checkout, _from, s) do
    {:reply,
     {:error, Error.client(:unavailable, "not connected to the sidecar at #{s.host}:#{s.port}")},
     s}
  end

  def handle_call({:when_up, _pid, _ref}, _from, %{up?: true} = s), do: {:reply, :up, s}

  def handle_call({:when_up, pid, ref}, _from, s),
    do: {:reply, :waiting, %{s | waiters: Map.put(s.waiters, ref, pid)}}

  @impl true
  def handle_cast({:forget, ref}, s), do: {:noreply, %{s | waiters: Map.delete(s.waiters, ref)}}

  @impl true
  def handle_info({:gun_up, gun, _protocol}, %{gun: gun} = s) do
    Enum.each(s.waiters, fn {ref, pid} -> send(pid, {ref, :up}) end)
    {:noreply, %{s | up?: true, waiters: %{}, backoff: 50}}
  end

  def handle_info({:gun_down, gun, _protocol, reason, _killed}, %{gun: gun} = s) do
    # With retry 0, gun stops after this; the monitor below reconnects.
    Logger.debug("dspy_bridge: connection down: #{inspect(reason)}")
    {:noreply, %{s | up?: false}}
  end

  def handle_info({:DOWN, mref, :process, _gun, _reason}, %{mref: mref} = s) do
    Process.send_after(self(), :reconnect, s.backoff)
    {:noreply, %{s | up?: false, gun: nil, mref: nil, backoff: min(s.backoff * 2, s.max_backoff)}}
  end

  def handle_info(:reconnect, %{gun: nil} = s), do: {:noreply, open(s)}
  def handle_info({:EXIT, _pid, _reason}, s), do: {:noreply, s}
  def handle_info(_other, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, %{gun: gun}) when is_pid(gun), do: :gun.close(gun)
  def terminate(_reason, _s), do: :ok

  defp open(s) do
    opts = %{
      protocols: [:http2],
      retry: 0,
      connect_timeout: s.connect_timeout,
      http2_opts: %{keepalive: 30_000},
      tcp_opts: [nodelay: true]
    }

    case :gun.open(String.to_charlist(s.host), s.port, opts) do
      {:ok, gun} ->
        %{s | gun: gun, mref: Process.monitor(gun)}

      {:error, reason} ->
        Logger.warning("dspy_bridge: cannot open a connection: #{inspect(reason)}")
        Process.send_after(self(), :reconnect, s.backoff)
        %{s | backoff: min(s.backoff * 2, s.max_backoff)}
    end
  end

  defp parse_address(address) do
    case String.split(address, ":") |> Enum.reverse() do
      [port | host_parts] when host_parts != [] ->
        host =
          host_parts
          |> Enum.reverse()
          |> Enum.join(":")
          |> String.trim_leading("[")
          |> String.trim_trailing("]")

        {host, String.to_integer(port)}

      _ ->
        raise ArgumentError, "address must be \"host:port\", got #{inspect(address)}"
    end
  end
end
