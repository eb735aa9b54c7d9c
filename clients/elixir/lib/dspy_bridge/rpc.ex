defmodule DSPyBridge.RPC do
  @moduledoc false
  # gRPC calls over the connection's gun process. grpc-elixir's stub drops the status details
  # trailer and leaves gun messages behind after a client-side timeout, so calls are driven
  # here: the generated service definition gives the paths and message types, every call
  # monitors the gun process, and a call that gives up cancels its stream and flushes its
  # messages before returning.

  alias DSPyBridge.{Connection, Error}

  @service DspyBridge.V1.BridgeService.Service
  @health Grpc.Health.V1.Health.Service

  @rpcs (for service <- [@service, @health],
             {name, {req, _}, {resp, stream?}, _opts} <- service.__rpc_calls__(),
             into: %{} do
           {name, {"/#{service.__meta__(:name)}/#{name}", req, resp, stream?}}
         end)

  # Extra time after the deadline sent to the server, so the server's own DEADLINE_EXCEEDED
  # (with its details) arrives before this side gives up.
  @grace_ms 1_000

  @doc false
  def unary(conn, rpc, request, opts) do
    {path, _req, resp_mod, false} = Map.fetch!(@rpcs, rpc)

    with {:ok, gun, defaults} <- Connection.checkout(conn) do
      timeout = Keyword.get(opts, :timeout, defaults.timeout)
      mref = Process.monitor(gun)
      ref = post(gun, path, request, timeout, defaults)
      deadline = deadline(timeout)
      result = await_unary(new_reader(gun, ref, mref, resp_mod), deadline, nil)
      Process.demonitor(mref, [:flush])
      result
    end
  end

  @doc false
  # Opens a server stream whose events arrive in the calling process; read them with
  # `handle_message/2` and give up with `cancel/1`.
  def open_stream(conn, rpc, request, opts) do
    {path, _req, resp_mod, true} = Map.fetch!(@rpcs, rpc)

    with {:ok, gun, defaults} <- Connection.checkout(conn) do
      timeout = Keyword.get(opts, :timeout, :infinity)
      mref = Process.monitor(gun)
      ref = post(gun, path, request, timeout, defaults)
      {:ok, new_reader(gun, ref, mref, resp_mod)}
    end
  end

  @doc false
  # Feeds one process message to a stream reader. Returns `{:events, events, reader}`,
  # `{:done, :ok | {:error, error}, events}` (the stream is over and cleaned up), or `:unknown`
  # when the message is not this stream's.
  def handle_message(%{gun: gun, ref: ref, mref: mref} = r, msg) do
    case msg do
      {:gun_response, ^gun, ^ref, :fin, _status, headers} ->
        finish(r, status_of(headers), [])

      {:gun_response, ^gun, ^ref, :nofin, 200, _headers} ->
        {:events, [], r}

      {:gun_response, ^gun, ^ref, :nofin, status, _headers} ->
        cancel(r)
        {:done, {:error, Error.client(:unknown, "HTTP status #{status} from the server")}, []}

      {:gun_data, ^gun, ^ref, is_fin, data} ->
        case decode_frames(r.buffer <> data, r.resp_mod, []) do
          {:ok, events, rest} when is_fin == :fin ->
            _ = rest
            finish(r, {:error, Error.client(:internal, "stream ended without a status")}, events)

          {:ok, events, rest} ->
            {:events, events, %{r | buffer: rest}}

          {:error, error} ->
            cancel(r)
            {:done, {:error, error}, []}
        end

      {:gun_trailers, ^gun, ^ref, trailers} ->
        finish(r, status_of(trailers), [])

      {:gun_error, ^gun, ^ref, reason} ->
        finish(r, {:error, Error.client(:unavailable, "stream failed: #{inspect(reason)}")}, [])

      {:DOWN, ^mref, :process, ^gun, reason} ->
        {:done, {:error, Error.client(:unavailable, "connection lost: #{inspect(reason)}")}, []}

      _other ->
        :unknown
    end
  end

  @doc false
  # Stops a stream and removes every message it left in the caller's mailbox.
  def cancel(%{gun: gun, ref: ref, mref: mref}) do
    :gun.cancel(gun, ref)
    # The cancel is handled before this synchronous request: once it returns, gun sends no
    # more messages for the stream, and the ones it had sent are already here to flush.
    try do
      :sys.get_state(gun, 5_000)
    catch
      :exit, _ -> :ok
    end

    :gun.flush(ref)
    Process.demonitor(mref, [:flush])
    :ok
  end

  defp finish(r, result, events) do
    Process.demonitor(r.mref, [:flush])
    {:done, result, events}
  end

  defp new_reader(gun, ref, mref, resp_mod),
    do: %{gun: gun, ref: ref, mref: mref, resp_mod: resp_mod, buffer: <<>>}

  defp await_unary(reader, deadline, reply) do
    wait = remaining(deadline)

    %{gun: gun, ref: ref, mref: mref} = reader

    receive do
      msg
      when (elem(msg, 0) == :gun_response and elem(msg, 1) == gun and elem(msg, 2) == ref) or
             (elem(msg, 0) == :gun_data and elem(msg, 1) == gun and elem(msg, 2) == ref) or
             (elem(msg, 0) == :gun_trailers and elem(msg, 1) == gun and elem(msg, 2) == ref) or
             (elem(msg, 0) == :gun_error and tuple_size(msg) == 4 and elem(msg, 2) == ref) or
             (elem(msg, 0) == :DOWN and elem(msg, 1) == mref) ->
        case handle_message(reader, msg) do
          :unknown ->
            await_unary(reader, deadline, reply)

          {:events, events, reader} ->
            await_unary(reader, deadline, List.last(events, reply))

          {:done, :ok, events} ->
            case List.last(events, reply) do
              nil -> {:error, Error.client(:internal, "the server sent no response message")}
              response -> {:ok, response}
            end

          {:done, {:error, error}, _events} ->
            {:error, error}
        end
    after
      wait ->
        cancel(reader)
        {:error, Error.client(:deadline_exceeded, "no response within the call's timeout")}
    end
  end

  defp post(gun, path, request, timeout, defaults) do
    body = request |> Protobuf.encode() |> frame()
    headers = headers(timeout, defaults.headers)
    :gun.post(gun, path, headers, body, %{reply_to: self()})
  end

  defp headers(:infinity, extra),
    do: [{"content-type", "application/grpc+proto"}, {"te", "trailers"} | extra]

  defp headers(ms, extra) when is_integer(ms),
    do: [{"grpc-timeout", "#{ms}m"} | headers(:infinity, extra)]

  defp frame(bytes), do: [<<0, byte_size(bytes)::32>>, bytes]

  defp decode_frames(<<0, len::32, msg::binary-size(len), rest::binary>>, mod, acc),
    do: decode_frames(rest, mod, [mod.decode(msg) | acc])

  defp decode_frames(<<1, _::binary>>, _mod, _acc),
    do: {:error, Error.client(:internal, "compressed responses are not supported")}

  defp decode_frames(rest, _mod, acc), do: {:ok, Enum.reverse(acc), rest}

  defp status_of(headers) do
    case Error.from_headers(headers) do
      nil -> :ok
      error -> {:error, error}
    end
  end

  defp deadline(:infinity), do: :infinity
  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms + @grace_ms

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
