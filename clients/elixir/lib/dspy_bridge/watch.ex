defmodule DSPyBridge.Watch do
  @moduledoc """
  A variable watch running as its own supervised process (started by `DSPyBridge.watch/3`).

  It reads the sidecar's WatchVariables stream and sends each event to the receiver as a
  message (see `DSPyBridge.watch/3` for the messages). When the stream fails with
  `:unavailable` (the sidecar is draining, `DRAINING`, or the connection dropped), it watches
  again with `include_initial`, so the receiver gets every watched variable's current value as
  an `:initial` change instead of silently missing versions. It stops after `session_ended`,
  after a non-retryable error, when the receiver exits, or on `DSPyBridge.unwatch/1`.
  """

  use GenServer, restart: :temporary
  require Logger

  alias DSPyBridge.{Convert, Error, RPC, Session, Streams, Variable}
  alias DspyBridge.V1.WatchVariablesRequest

  @max_backoff 2_000

  @doc false
  def start_link({%Session{}, _names, _opts} = args), do: GenServer.start_link(__MODULE__, args)

  @doc "Stops the watch (cancelling its stream on the sidecar)."
  @spec stop(pid()) :: :ok
  def stop(pid) do
    GenServer.stop(pid, :normal)
  catch
    :exit, _ -> :ok
  end

  @impl true
  def init({session, names, opts}) do
    to = Keyword.fetch!(opts, :to)

    state = %{
      session: session,
      names: names,
      to: to,
      to_ref: Process.monitor(to),
      include_initial: Keyword.get(opts, :include_initial, false),
      reader: nil,
      backoff: 50
    }

    # Return only once the sidecar has subscribed the watch (it sends the response headers
    # then): a write made after `DSPyBridge.watch/3` returns is never missed, and a bad
    # request (unknown session or variable) is the caller's `{:error, error}`.
    case open_and_await_headers(state, Keyword.get(opts, :timeout, 30_000)) do
      {:ok, reader, events} -> {:ok, %{state | reader: reader}, {:continue, {:deliver, events}}}
      {:error, error} -> {:stop, {:shutdown, error}}
    end
  end

  @impl true
  def handle_continue({:deliver, events}, s), do: deliver(events, s)

  defp open_and_await_headers(s, timeout) do
    with {:ok, reader} <- RPC.open_stream(s.session.conn, :WatchVariables, request(s), []) do
      case Streams.next(reader, timeout) do
        {:events, events, reader} ->
          {:ok, reader, events}

        {:done, {:error, error}, _} ->
          {:error, error}

        {:done, :ok, _} ->
          {:error, Error.client(:internal, "the watch ended before it started")}

        :timeout ->
          RPC.cancel(reader)

          {:error,
           Error.client(:deadline_exceeded, "the watch did not start within #{timeout} ms")}
      end
    end
  end

  defp request(s) do
    %WatchVariablesRequest{
      session_id: s.session.id,
      names: s.names,
      include_initial: s.include_initial
    }
  end

  @impl true
  def handle_info(:reopen, s), do: open(s)

  def handle_info({:DOWN, ref, :process, _, _}, %{to_ref: ref} = s), do: {:stop, :normal, s}

  def handle_info(msg, %{reader: reader} = s) when reader != nil do
    case RPC.handle_message(reader, msg) do
      :unknown ->
        {:noreply, s}

      {:events, events, reader} ->
        deliver(events, %{s | reader: reader, backoff: 50})

      {:done, result, events} ->
        case deliver(events, %{s | reader: nil}) do
          {:stop, _, _} = stop -> stop
          {:noreply, s} -> ended(result, s)
        end
    end
  end

  def handle_info(_msg, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, %{reader: reader}) when reader != nil, do: RPC.cancel(reader)
  def terminate(_reason, _s), do: :ok

  defp open(s) do
    case RPC.open_stream(s.session.conn, :WatchVariables, request(s), []) do
      {:ok, reader} ->
        {:noreply, %{s | reader: reader}}

      {:error, %Error{code: :unavailable}} ->
        {:noreply, retry_later(s)}

      {:error, error} ->
        send(s.to, {:dspy_bridge, :watch_error, error})
        {:stop, :normal, s}
    end
  end

  # After an interruption the receiver may have missed versions: watch again, starting with
  # the current values.
  defp retry_later(s) do
    Process.send_after(self(), :reopen, s.backoff)
    %{s | reader: nil, include_initial: true, backoff: min(s.backoff * 2, @max_backoff)}
  end

  defp ended(:ok, s), do: {:noreply, retry_later(s)}

  defp ended({:error, %Error{code: :unavailable} = error}, s) do
    Logger.debug("dspy_bridge watch interrupted (#{error.reason}); watching again")
    {:noreply, retry_later(s)}
  end

  defp ended({:error, error}, s) do
    send(s.to, {:dspy_bridge, :watch_error, error})
    {:stop, :normal, s}
  end

  defp deliver([], s), do: {:noreply, s}

  defp deliver([%{event: {:change, c}} | rest], s) do
    change = %{
      kind: Convert.enum(c.kind, "VARIABLE_CHANGE_KIND_"),
      variable: Variable.from_proto(c.variable),
      reason: c.reason
    }

    send(s.to, {:dspy_bridge, :variable, change})
    deliver(rest, s)
  end

  defp deliver([%{event: {:resync, r}} | rest], s) do
    resync = %{
      variables: Enum.map(r.variables, &Variable.from_proto/1),
      skipped_changes: r.skipped_changes,
      more: r.more
    }

    send(s.to, {:dspy_bridge, :resync, resync})
    deliver(rest, s)
  end

  defp deliver([%{event: {:session_ended, e}} | _rest], s) do
    send(s.to, {:dspy_bridge, :session_ended, e.reason})
    # The stream ends after this event; cancel it rather than wait for the trailers.
    if s.reader, do: RPC.cancel(s.reader)
    {:stop, :normal, %{s | reader: nil}}
  end

  defp deliver([_other | rest], s), do: deliver(rest, s)
end
