defmodule DSPyBridge.Streams do
  @moduledoc false
  # Server streams as a lazy `Stream` read by the enumerating process, or forwarded as messages
  # by a supervised task. Either way a stream given up early is cancelled on the sidecar and
  # leaves no messages behind.

  alias DSPyBridge.{Error, RPC}

  def start(conn, rpc, request, convert, opts) do
    case Keyword.get(opts, :to) do
      nil -> {:ok, lazy(conn, rpc, request, convert, opts)}
      pid -> forward(conn, rpc, request, convert, opts, pid)
    end
  end

  defp lazy(conn, rpc, request, convert, opts) do
    Stream.resource(
      fn ->
        case RPC.open_stream(conn, rpc, request, opts) do
          {:ok, reader} -> {:open, reader}
          {:error, error} -> raise error
        end
      end,
      fn
        {:open, reader} ->
          case next(reader) do
            {:events, events, reader} -> {Enum.map(events, convert), {:open, reader}}
            {:done, :ok, events} -> {Enum.map(events, convert), :done}
            {:done, {:error, error}, events} -> {Enum.map(events, convert), {:failed, error}}
          end

        {:failed, error} ->
          raise error

        :done ->
          {:halt, :done}
      end,
      fn
        {:open, reader} -> RPC.cancel(reader)
        _ -> :ok
      end
    )
  end

  # Waits for this stream's next message (only its own: other messages stay in the mailbox).
  @doc false
  # `:timeout` after `timeout` ms with nothing for this stream.
  def next(%{ref: ref, mref: mref} = reader, timeout \\ :infinity) do
    receive do
      {:dspy_bridge_h2, ^ref, _} = m -> RPC.handle_message(reader, m)
      {:DOWN, ^mref, :process, _, _} = m -> RPC.handle_message(reader, m)
    after
      timeout -> :timeout
    end
  end

  defp forward(conn, rpc, request, convert, opts, to) do
    tag = Keyword.get(opts, :tag, rpc_tag(rpc))
    ref = make_ref()

    {:ok, _pid} =
      Task.Supervisor.start_child(DSPyBridge.TaskSupervisor, fn ->
        watch_ref = Process.monitor(to)

        case RPC.open_stream(conn, rpc, request, opts) do
          {:ok, reader} -> pump(reader, convert, to, watch_ref, {tag, ref})
          {:error, error} -> send(to, {:dspy_bridge, tag, ref, {:error, error}})
        end
      end)

    {:ok, ref}
  end

  defp rpc_tag(:ExecuteStream), do: :execute_stream
  defp rpc_tag(rpc), do: rpc

  defp pump(%{ref: sref, mref: mref} = reader, convert, to, watch_ref, {tag, ref} = t) do
    receive do
      {:DOWN, ^watch_ref, :process, _, _} ->
        RPC.cancel(reader)

      msg
      when (elem(msg, 0) == :dspy_bridge_h2 and elem(msg, 1) == sref) or
             (elem(msg, 0) == :DOWN and elem(msg, 1) == mref) ->
        case RPC.handle_message(reader, msg) do
          :unknown ->
            pump(reader, convert, to, watch_ref, t)

          {:events, events, reader} ->
            Enum.each(events, &send(to, {:dspy_bridge, tag, ref, convert.(&1)}))
            pump(reader, convert, to, watch_ref, t)

          {:done, result, events} ->
            Enum.each(events, &send(to, {:dspy_bridge, tag, ref, convert.(&1)}))

            case result do
              :ok -> :ok
              {:error, %Error{} = error} -> send(to, {:dspy_bridge, tag, ref, {:error, error}})
            end
        end
    end
  end
end
