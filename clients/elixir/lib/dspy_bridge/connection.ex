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
    * `:tls` - connect over TLS with these `:ssl` client options, e.g.
      `[cacertfile: "ca.pem"]`, plus `certfile:`/`keyfile:` for mutual TLS (the sidecar's
      `--tls-client-ca-file`). The server's certificate is verified (`verify: :verify_peer`)
      unless the options say otherwise. Without `:tls` the connection is plaintext HTTP/2.

  While the connection is down, calls fail at once with `%DSPyBridge.Error{code: :unavailable}`
  instead of waiting; `DSPyBridge.wait_until_ready/2` waits for it to be up. When the sidecar
  says it is going away (HTTP/2 GOAWAY, e.g. while draining), calls in flight finish on the old
  connection and new ones go to a new one.

  The process owns the socket (a `Mint.HTTP2` connection): each call's request is written by it
  and each response part is sent to the calling process as a message that the call consumes;
  a call that gives up cancels its stream here first, so none of its messages can arrive after.
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
  # Starts a request whose response parts arrive in the calling process as
  # `{:dspy_bridge_h2, ref, [part]}`. Returns the ref, the connection's pid and its call defaults.
  @spec request(t(), String.t(), [{String.t(), String.t()}], iodata(), keyword()) ::
          {:ok, reference(), pid(), map()} | {:error, Error.t()}
  def request(conn, path, headers, body, opts) do
    # No call timeout here: a request waiting for a free stream is answered by the connection
    # at its own deadline (see `queue_request`).
    GenServer.call(conn, {:request, path, headers, body, opts, self()}, :infinity)
  catch
    :exit, reason ->
      {:error, Error.client(:unavailable, "no connection process: #{inspect(reason)}")}
  end

  @doc false
  # Sends more of a request's body (`opts[:stream_body]` requests); `fin` ends it.
  @spec send_data(pid(), reference(), iodata(), boolean()) :: :ok | {:error, Error.t()}
  def send_data(pid, ref, data, fin) do
    GenServer.call(pid, {:send_data, ref, IO.iodata_to_binary(data), fin})
  catch
    :exit, reason ->
      {:error, Error.client(:unavailable, "no connection process: #{inspect(reason)}")}
  end

  @doc false
  # Cancels a request; once this returns, no more of its messages are sent.
  @spec cancel(pid(), reference()) :: :ok
  def cancel(pid, ref) do
    GenServer.call(pid, {:cancel, ref})
  catch
    :exit, _ -> :ok
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

  # -- server ------------------------------------------------------------------------------

  @impl true
  def init(opts) do
    {host, port} = parse_address(Keyword.get(opts, :address, "127.0.0.1:50051"))
    token = Keyword.get(opts, :token)
    auth = if token, do: [{"authorization", "Bearer " <> token}], else: []

    state = %{
      host: host,
      port: port,
      # The connection new requests go to (nil while down) and older ones still finishing.
      conn: nil,
      draining: [],
      connecting: nil,
      # request ref → %{pid:, mref:, socket: its connection's, pending: body still to send}
      routes: %{},
      # Requests waiting for a free stream: {tag, request, from}.
      queue: :queue.new(),
      waiters: %{},
      backoff: 50,
      max_backoff: Keyword.get(opts, :max_backoff, 2_000),
      connect_timeout: Keyword.get(opts, :connect_timeout, 5_000),
      tls: Keyword.get(opts, :tls),
      defaults: %{
        timeout: Keyword.get(opts, :timeout, 30_000),
        headers: auth ++ Keyword.get(opts, :headers, [])
      }
    }

    {:ok, start_connecting(state)}
  end

  @impl true
  def handle_call({:request, _path, _headers, _body, _opts, _pid}, _from, %{conn: nil} = s) do
    {:reply,
     {:error, Error.client(:unavailable, "not connected to the sidecar at #{s.host}:#{s.port}")},
     s}
  end

  def handle_call({:request, _path, _headers, _body, _opts, _pid} = request, from, s) do
    if at_stream_limit?(s) do
      {:noreply, queue_request(s, request, from)}
    else
      {reply, s} = start_request(s, request)
      {:reply, reply, s}
    end
  end

  def handle_call({:cancel, ref}, _from, s), do: {:reply, :ok, drop_route(s, ref, true)}

  def handle_call({:send_data, ref, data, fin}, _from, s) do
    case s.routes[ref] do
      route when route == nil or route.pending == nil ->
        {:reply, {:error, Error.client(:unavailable, "the stream has ended")}, s}

      route ->
        route = %{route | pending: route.pending <> data, fin: fin}
        {:reply, :ok, send_pending(%{s | routes: Map.put(s.routes, ref, route)}, ref)}
    end
  end

  def handle_call({:when_up, _pid, _ref}, _from, %{conn: conn} = s) when conn != nil,
    do: {:reply, :up, s}

  def handle_call({:when_up, pid, ref}, _from, s),
    do: {:reply, :waiting, %{s | waiters: Map.put(s.waiters, ref, pid)}}

  @impl true
  def handle_cast({:forget, ref}, s), do: {:noreply, %{s | waiters: Map.delete(s.waiters, ref)}}

  @impl true
  def handle_info({:connected, task, conn}, %{connecting: task} = s) do
    case Mint.HTTP.set_mode(conn, :active) do
      {:ok, conn} ->
        Enum.each(s.waiters, fn {ref, pid} -> send(pid, {ref, :up}) end)
        {:noreply, %{s | conn: conn, connecting: nil, waiters: %{}, backoff: 50}}

      {:error, reason} ->
        Mint.HTTP.close(conn)
        handle_info({:connect_failed, task, reason}, s)
    end
  end

  def handle_info({:connect_failed, task, reason}, %{connecting: task} = s) do
    Logger.debug("dspy_bridge: cannot connect to #{s.host}:#{s.port}: #{inspect(reason)}")
    Process.send_after(self(), :reconnect, s.backoff)
    {:noreply, %{s | connecting: nil, backoff: min(s.backoff * 2, s.max_backoff)}}
  end

  def handle_info({:queue_expired, tag}, s) do
    case Enum.split_with(:queue.to_list(s.queue), fn {t, _, _} -> t == tag end) do
      {[{_, _request, from}], rest} ->
        error =
          Error.client(:deadline_exceeded, "no free HTTP/2 stream within the call's timeout")

        GenServer.reply(from, {:error, error})
        {:noreply, %{s | queue: :queue.from_list(rest)}}

      {[], _} ->
        {:noreply, s}
    end
  end

  def handle_info(:reconnect, %{conn: nil, connecting: nil} = s),
    do: {:noreply, start_connecting(s)}

  def handle_info({:DOWN, mref, :process, _pid, _reason}, s) do
    # A caller died: cancel its streams so the sidecar frees their slots.
    refs = for {ref, %{mref: ^mref}} <- s.routes, do: ref
    {:noreply, Enum.reduce(refs, s, &drop_route(&2, &1, true))}
  end

  def handle_info(message, s) do
    case stream_message([s.conn | s.draining], message, s) do
      :unknown -> {:noreply, s}
      s -> {:noreply, s}
    end
  end

  @impl true
  def terminate(_reason, s) do
    for conn <- [s.conn | s.draining], conn != nil, do: Mint.HTTP.close(conn)
    :ok
  end

  # -- internals ---------------------------------------------------------------------------

  defp start_request(s, {:request, path, headers, body, opts, pid}) do
    timeout = Keyword.get(opts, :timeout, s.defaults.timeout)
    headers = request_headers(timeout, s.defaults.headers) ++ headers

    case Mint.HTTP2.request(s.conn, "POST", path, headers, :stream) do
      {:ok, conn, ref} ->
        route = %{
          pid: pid,
          mref: Process.monitor(pid),
          socket: Mint.HTTP.get_socket(conn),
          pending: IO.iodata_to_binary(body),
          # Whether the body ends once `pending` is sent; a streaming body ends on request.
          fin: not Keyword.get(opts, :stream_body, false)
        }

        s = %{s | conn: conn, routes: Map.put(s.routes, ref, route)}
        {{:ok, ref, self(), Map.put(s.defaults, :timeout, timeout)}, send_pending(s, ref)}

      {:error, conn, error} ->
        s = %{s | conn: conn}
        {{:error, Error.client(:unavailable, Exception.message(error))}, check_open(s)}
    end
  end

  # The sidecar caps concurrent streams per connection (HTTP/2 SETTINGS); past the cap a
  # request waits here, in order, for a stream to end, at most its own timeout.
  defp at_stream_limit?(%{conn: conn}) do
    Mint.HTTP2.open_request_count(conn) >=
      Mint.HTTP2.get_server_setting(conn, :max_concurrent_streams)
  end

  defp queue_request(s, {:request, _, _, _, opts, _} = request, from) do
    tag = make_ref()

    case Keyword.get(opts, :timeout, s.defaults.timeout) do
      ms when is_integer(ms) -> Process.send_after(self(), {:queue_expired, tag}, ms)
      :infinity -> :ok
    end

    %{s | queue: :queue.in({tag, request, from}, s.queue)}
  end

  defp dequeue(%{conn: nil} = s), do: s

  defp dequeue(s) do
    if at_stream_limit?(s) do
      s
    else
      case :queue.out(s.queue) do
        {:empty, _} ->
          s

        {{:value, {_tag, {:request, _, _, _, _, pid} = request, from}}, queue} ->
          s = %{s | queue: queue}

          if Process.alive?(pid) do
            {reply, s} = start_request(s, request)
            GenServer.reply(from, reply)
            dequeue(s)
          else
            dequeue(s)
          end
      end
    end
  end

  # Without a connection, waiting requests fail fast like new ones.
  defp fail_queue(s) do
    for {_tag, _request, from} <- :queue.to_list(s.queue) do
      GenServer.reply(
        from,
        {:error, Error.client(:unavailable, "the connection to the sidecar closed")}
      )
    end

    %{s | queue: :queue.new()}
  end

  # Connecting blocks, so it runs in a task; calls meanwhile fail fast with :unavailable.
  defp start_connecting(s) do
    owner = self()
    %{host: host, port: port, connect_timeout: timeout} = s
    {scheme, transport_opts} = transport(s)

    {:ok, task} =
      Task.start(fn ->
        case Mint.HTTP2.connect(scheme, host, port,
               # Passive until this process owns the socket: in active mode the server's first
               # frames would be delivered to the connecting task and lost.
               mode: :passive,
               transport_opts: [timeout: timeout, nodelay: true] ++ transport_opts
             ) do
          {:ok, conn} ->
            case Mint.HTTP.controlling_process(conn, owner) do
              {:ok, conn} -> send(owner, {:connected, self(), conn})
              {:error, reason} -> send(owner, {:connect_failed, self(), reason})
            end

          {:error, reason} ->
            send(owner, {:connect_failed, self(), reason})
        end
      end)

    %{s | connecting: task}
  end

  defp transport(%{tls: nil}), do: {:http, []}
  defp transport(%{tls: tls}), do: {:https, Keyword.put_new(tls, :verify, :verify_peer)}

  defp stream_message([], _message, _s), do: :unknown
  defp stream_message([nil | rest], message, s), do: stream_message(rest, message, s)

  defp stream_message([conn | rest], message, s) do
    case Mint.HTTP2.stream(conn, message) do
      :unknown ->
        stream_message(rest, message, s)

      {:ok, conn, responses} ->
        s |> put_conn(conn) |> deliver(responses) |> flush_pending() |> check_open()

      {:error, conn, error, responses} ->
        Logger.debug("dspy_bridge: connection error: #{Exception.message(error)}")
        s |> put_conn(conn) |> deliver(responses) |> check_open()
    end
  end

  defp put_conn(s, conn) do
    if s.conn != nil and same_socket?(s.conn, conn),
      do: %{s | conn: conn},
      else: %{s | draining: Enum.map(s.draining, &if(same_socket?(&1, conn), do: conn, else: &1))}
  end

  defp same_socket?(a, b), do: Mint.HTTP.get_socket(a) == Mint.HTTP.get_socket(b)

  # The parts of one socket read go to each caller as one message per request, so a
  # trailers-only answer (headers and end of stream in one frame) is seen whole.
  defp deliver(s, responses) do
    responses
    |> Enum.group_by(&elem(&1, 1), &part/1)
    |> Enum.reduce(s, fn {ref, parts}, s ->
      case Map.fetch(s.routes, ref) do
        {:ok, %{pid: pid}} ->
          send(pid, {:dspy_bridge_h2, ref, parts})
          if Enum.any?(parts, &final?/1), do: drop_route(s, ref, false), else: s

        :error ->
          s
      end
    end)
  end

  defp final?(:done), do: true
  defp final?({:error, _}), do: true
  defp final?(_part), do: false

  defp part({:status, _ref, status}), do: {:status, status}
  defp part({:headers, _ref, headers}), do: {:headers, headers}
  defp part({:data, _ref, data}), do: {:data, data}
  defp part({:done, _ref}), do: :done
  defp part({:error, _ref, error}), do: {:error, Exception.message(error)}

  # A connection closed for new requests (GOAWAY, a socket error) goes to `draining`, or away
  # once it has nothing in flight; a new one is started.
  defp check_open(s) do
    s =
      if s.conn != nil and not Mint.HTTP2.open?(s.conn, :write) do
        Process.send_after(self(), :reconnect, 0)
        fail_queue(%{s | conn: nil, draining: [s.conn | s.draining]})
      else
        s
      end

    {alive, closed} =
      Enum.split_with(
        s.draining,
        &(Mint.HTTP2.open?(&1, :read) and Mint.HTTP2.open_request_count(&1) > 0)
      )

    for conn <- closed, do: Mint.HTTP.close(conn)
    s = %{s | draining: alive}
    fail_orphans(s)
  end

  # Requests whose connection is gone end with an error for their caller.
  defp fail_orphans(s) do
    live = for conn <- [s.conn | s.draining], conn != nil, do: Mint.HTTP.get_socket(conn)

    Enum.reduce(s.routes, s, fn {ref, %{pid: pid, socket: socket}}, s ->
      if socket in live do
        s
      else
        send(pid, {:dspy_bridge_h2, ref, [{:error, "connection closed"}]})
        drop_route(s, ref, false)
      end
    end)
  end

  defp conn_of(s, %{socket: socket}),
    do: Enum.find([s.conn | s.draining], &(&1 != nil and Mint.HTTP.get_socket(&1) == socket))

  defp drop_route(s, ref, cancel?) do
    case Map.pop(s.routes, ref) do
      {nil, _} ->
        s

      {%{mref: mref} = route, routes} ->
        Process.demonitor(mref, [:flush])
        s = %{s | routes: routes}
        s = if cancel?, do: cancel_request(s, ref, route), else: s
        dequeue(s)
    end
  end

  defp cancel_request(s, ref, route) do
    case conn_of(s, route) do
      nil ->
        s

      conn ->
        {_ok_or_error, conn} =
          case Mint.HTTP2.cancel_request(conn, ref) do
            {:ok, conn} -> {:ok, conn}
            {:error, conn, _reason} -> {:error, conn}
          end

        put_conn(s, conn)
    end
  end

  # Request bodies larger than the flow-control window go out as the window opens.
  defp flush_pending(s) do
    Enum.reduce(Map.keys(s.routes), s, &send_pending(&2, &1))
  end

  defp send_pending(s, ref) do
    with %{pending: pending, fin: fin} = route when pending != nil <- s.routes[ref],
         conn when conn != nil <- conn_of(s, route) do
      window =
        min(
          Mint.HTTP2.get_window_size(conn, :connection),
          Mint.HTTP2.get_window_size(conn, {:request, ref})
        )

      {chunk, rest} =
        if byte_size(pending) <= window,
          do: {pending, ""},
          else:
            {binary_part(pending, 0, window),
             binary_part(pending, window, byte_size(pending) - window)}

      # `pending: nil` once the body has ended.
      ends? = fin and rest == ""

      with {:ok, conn} <- maybe_send(conn, ref, chunk),
           {:ok, conn} <-
             if(ends?, do: Mint.HTTP2.stream_request_body(conn, ref, :eof), else: {:ok, conn}) do
        route = %{route | pending: if(ends?, do: nil, else: rest)}
        s |> put_conn(conn) |> Map.update!(:routes, &Map.put(&1, ref, route))
      else
        {:error, conn, error} ->
          send(route.pid, {:dspy_bridge_h2, ref, [{:error, Exception.message(error)}]})
          s |> put_conn(conn) |> drop_route(ref, false)
      end
    else
      _ -> s
    end
  end

  defp maybe_send(conn, _ref, ""), do: {:ok, conn}
  defp maybe_send(conn, ref, chunk), do: Mint.HTTP2.stream_request_body(conn, ref, chunk)

  defp request_headers(:infinity, extra),
    do: [{"content-type", "application/grpc+proto"}, {"te", "trailers"} | extra]

  defp request_headers(ms, extra) when is_integer(ms),
    do: [{"grpc-timeout", "#{ms}m"} | request_headers(:infinity, extra)]

  defp parse_address(address) do
    case address |> String.split(":") |> Enum.reverse() do
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
