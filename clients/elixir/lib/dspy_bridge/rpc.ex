defmodule DSPyBridge.RPC do
  @moduledoc false
  # gRPC calls over a `DSPyBridge.Connection`. grpc-elixir's stub drops the status details
  # trailer and leaves transport messages behind after a client-side timeout, so calls are
  # driven here: the generated service definitions give the paths and message types, every
  # call monitors the connection process, and a call that gives up cancels its stream (after
  # which no message of it can arrive) and flushes what had arrived before returning.

  alias DSPyBridge.{Connection, Error}

  @service DspyBridge.V1.BridgeService.Service
  @health Grpc.Health.V1.Health.Service

  @rpcs (for service <- [@service, @health],
             {name, {_req, _}, {resp, stream?}, _opts} <- service.__rpc_calls__(),
             into: %{} do
           {name, {"/#{service.__meta__(:name)}/#{name}", resp, stream?}}
         end)

  # Extra time after the deadline sent to the server, so the server's own DEADLINE_EXCEEDED
  # (with its details) arrives before this side gives up.
  @grace_ms 1_000

  @doc false
  def unary(conn, rpc, request, opts) do
    {path, resp_mod, false} = Map.fetch!(@rpcs, rpc)

    with {:ok, reader, timeout} <- start(conn, path, request, resp_mod, opts) do
      await_unary(reader, deadline(timeout), nil)
    end
  end

  @doc false
  # Opens a server stream whose events arrive in the calling process; read them with
  # `handle_message/2` and give up with `cancel/1`.
  def open_stream(conn, rpc, request, opts) do
    {path, resp_mod, true} = Map.fetch!(@rpcs, rpc)
    opts = Keyword.put_new(opts, :timeout, :infinity)

    with {:ok, reader, _timeout} <- start(conn, path, request, resp_mod, opts) do
      {:ok, reader}
    end
  end

  @doc false
  # Opens a bidirectional stream with `first` as its first message; send more with
  # `send_message/3` and read responses as for `open_stream/4`.
  def open_bidi(conn, rpc, first, opts) do
    {path, resp_mod, true} = Map.fetch!(@rpcs, rpc)
    opts = opts |> Keyword.put_new(:timeout, :infinity) |> Keyword.put(:stream_body, true)

    with {:ok, reader, _timeout} <- start(conn, path, first, resp_mod, opts) do
      {:ok, reader}
    end
  end

  @doc false
  def send_message(%{conn: pid, ref: ref}, message, fin \\ false) do
    Connection.send_data(pid, ref, message |> Protobuf.encode() |> frame(), fin)
  end

  defp start(conn, path, request, resp_mod, opts) do
    body = request |> Protobuf.encode() |> frame()

    with {:ok, ref, pid, defaults} <- Connection.request(conn, path, [], body, opts) do
      reader = %{
        conn: pid,
        ref: ref,
        mref: Process.monitor(pid),
        resp_mod: resp_mod,
        buffer: <<>>,
        headers: nil,
        trailers: nil,
        http_status: nil
      }

      {:ok, reader, defaults.timeout}
    end
  end

  @doc false
  # Feeds one process message to a stream reader. Returns `{:events, events, reader}`,
  # `{:done, :ok | {:error, error}, events}` (the stream is over and cleaned up), or `:unknown`
  # when the message is not this stream's.
  def handle_message(%{ref: ref} = r, {:dspy_bridge_h2, ref, parts}), do: parts(r, parts, [])

  def handle_message(%{mref: mref} = r, {:DOWN, mref, :process, _, reason}) do
    _ = r
    {:done, {:error, Error.client(:unavailable, "connection lost: #{inspect(reason)}")}, []}
  end

  def handle_message(_r, _msg), do: :unknown

  defp parts(r, [], events), do: {:events, events, r}

  defp parts(r, [{:status, status} | rest], events),
    do: parts(%{r | http_status: status}, rest, events)

  defp parts(%{headers: nil} = r, [{:headers, headers} | rest], events),
    do: parts(%{r | headers: headers}, rest, events)

  defp parts(r, [{:headers, trailers} | rest], events),
    do: parts(%{r | trailers: trailers}, rest, events)

  defp parts(r, [{:data, data} | rest], events) do
    case decode_frames(r.buffer <> data, r.resp_mod, []) do
      {:ok, new, buffer} ->
        parts(%{r | buffer: buffer}, rest, events ++ new)

      {:error, error} ->
        cancel(r)
        {:done, {:error, error}, events}
    end
  end

  defp parts(r, [:done | _], events), do: finish(r, status(r), events)

  defp parts(r, [{:error, reason} | _], events),
    do: finish(r, {:error, Error.client(:unavailable, "stream failed: #{reason}")}, events)

  @doc false
  # Stops a stream and removes every message it left in the caller's mailbox.
  def cancel(%{conn: pid, ref: ref, mref: mref}) do
    # Synchronous: once it returns the connection sends nothing more for this stream, and
    # what it had sent is already in the mailbox to flush.
    Connection.cancel(pid, ref)
    flush(ref)
    Process.demonitor(mref, [:flush])
    :ok
  end

  defp flush(ref) do
    receive do
      {:dspy_bridge_h2, ^ref, _} -> flush(ref)
    after
      0 -> :ok
    end
  end

  defp finish(r, result, events) do
    Process.demonitor(r.mref, [:flush])
    {:done, result, events}
  end

  # The call's status: from the trailers, or from the headers of a trailers-only answer.
  defp status(%{http_status: http}) when http != nil and http != 200,
    do: {:error, Error.client(:unknown, "HTTP status #{http} from the server")}

  defp status(r) do
    case Error.from_headers(r.trailers || r.headers || []) do
      nil -> :ok
      error -> {:error, error}
    end
  end

  defp await_unary(%{ref: ref, mref: mref} = reader, deadline, reply) do
    receive do
      {:dspy_bridge_h2, ^ref, _} = msg -> unary_step(reader, msg, deadline, reply)
      {:DOWN, ^mref, :process, _, _} = msg -> unary_step(reader, msg, deadline, reply)
    after
      remaining(deadline) ->
        cancel(reader)
        {:error, Error.client(:deadline_exceeded, "no response within the call's timeout")}
    end
  end

  defp unary_step(reader, msg, deadline, reply) do
    case handle_message(reader, msg) do
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
  end

  defp frame(bytes), do: [<<0, byte_size(bytes)::32>>, bytes]

  defp decode_frames(<<0, len::32, msg::binary-size(len), rest::binary>>, mod, acc),
    do: decode_frames(rest, mod, [mod.decode(msg) | acc])

  defp decode_frames(<<1, _::binary>>, _mod, _acc),
    do: {:error, Error.client(:internal, "compressed responses are not supported")}

  defp decode_frames(rest, _mod, acc), do: {:ok, Enum.reverse(acc), rest}

  defp deadline(:infinity), do: :infinity
  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms + @grace_ms

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
