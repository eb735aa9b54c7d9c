defmodule DSPyBridge.Host do
  @moduledoc ~S"""
  Lends Elixir functions to a session's DSPy programs over the sidecar's `Connect` stream:
  tools for ReAct agents (`host:<name>` in a module's `config.tools`), metrics for evaluations
  and optimizations (`MetricSpec` name `host:<name>`) and LMs (model `host:<name>`).

      {:ok, _host} =
        DSPyBridge.Host.start_link(
          session: session,
          tools: [
            %{name: "lookup_order", description: "Finds an order by id",
              parameters: %{type: "object", properties: %{id: %{type: "string"}}, required: ["id"]},
              fun: fn %{"id" => id} -> {:ok, "order #{id}: shipped"} end}
          ],
          metrics: [%{name: "polite", fun: fn call -> {:ok, score(call.prediction), "feedback"} end}],
          lms: [%{name: "echo", fun: fn %{messages: messages} -> {:ok, "..."} end}]
        )

  Or give `handler: MyHandler`, a module implementing this behaviour, with `tools`/`metrics`/
  `lms` as names (or maps without `:fun`).

  `start_link/1` returns once the sidecar welcomed the connection, so programs can use the
  names right away. Every call runs in its own task (many at once); a `cancel` from the sidecar
  (the caller went away or the deadline passed) kills the task. When the stream ends with
  `UNAVAILABLE` (`DRAINING`, connection lost) the host connects again with backoff and offers
  the same names; when the session is gone it stops. Run it under your supervisor.

  Return values:

    * tool: `{:ok, value}` (any value `DSPyBridge.Values` maps; the agent sees it) or
      `{:error, message}` (the agent sees the error as the observation);
    * metric: `{:ok, score}`, `{:ok, score, feedback}` or `{:error, message}`;
    * LM: `{:ok, text}`, `{:ok, text, usage_map}` or `{:error, message}`.

  A function that raises or returns anything else answers the call with an error.
  """

  use GenServer, restart: :transient
  require Logger

  alias DSPyBridge.{Convert, Error, RPC, Session, Streams, Values}
  alias DspyBridge.V1, as: PB

  @doc """
  A tool call: arguments (a map with string keys) → `{:ok, value}` or `{:error, message}`.
  `call` has `:module_id` (the module whose execution called the tool), `:job_id` (the
  optimization whose run made the call; `""` for executions), `:timeout_ms` and `:deadline`.
  """
  @callback handle_tool(name :: String.t(), arguments :: map(), call :: map()) ::
              {:ok, term()} | {:error, String.t()}
  @doc "A metric call: `call` has `:inputs`, `:labels`, `:prediction`, `:options`, `:job_id`."
  @callback handle_metric(name :: String.t(), call :: map()) ::
              {:ok, number()} | {:ok, number(), String.t()} | {:error, String.t()}
  @doc "An LM call: `call` has `:messages` (maps with `role` and `content`) and `:options`."
  @callback handle_lm(name :: String.t(), call :: map()) ::
              {:ok, String.t()} | {:ok, String.t(), map()} | {:error, String.t()}
  @optional_callbacks handle_tool: 3, handle_metric: 2, handle_lm: 2

  @max_backoff 2_000

  @doc """
  Connects and offers the names. Options: `:session` (a `%DSPyBridge.Session{}`), `:tools`,
  `:metrics`, `:lms`, `:handler`, `:name`, `:timeout` (for the welcome, default 30 s),
  `:notify` (a pid sent `{:dspy_bridge, :host_connected, welcome}` at every (re)connection).
  Returns `{:error, %DSPyBridge.Error{}}` when the sidecar refuses the offer.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    gen_opts = if name = opts[:name], do: [name: name], else: []

    # Started unlinked and linked once up: a refused offer is the caller's `{:error, error}`,
    # not an exit signal that would take the caller down.
    case GenServer.start(__MODULE__, opts, gen_opts) do
      {:ok, pid} ->
        Process.link(pid)
        {:ok, pid}

      {:error, {:shutdown, %Error{} = error}} ->
        {:error, error}

      other ->
        other
    end
  end

  @doc "The names the sidecar accepted: `%{connection_id:, tools:, metrics:, lms:}`."
  @spec welcome(GenServer.server()) :: map()
  def welcome(host), do: GenServer.call(host, :welcome)

  @doc "Closes the connection (in-flight calls are cancelled) and stops."
  @spec stop(GenServer.server()) :: :ok
  def stop(host), do: GenServer.stop(host, :normal)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    %Session{} = session = Keyword.fetch!(opts, :session)
    handler = Keyword.get(opts, :handler)

    state = %{
      session: session,
      handler: handler,
      tools: index(Keyword.get(opts, :tools, [])),
      metrics: index(Keyword.get(opts, :metrics, [])),
      lms: index(Keyword.get(opts, :lms, [])),
      reader: nil,
      welcome: nil,
      notify: Keyword.get(opts, :notify),
      # call_id → task pid, and task pid → call_id
      calls: %{},
      tasks: %{},
      backoff: 50
    }

    case connect(state, Keyword.get(opts, :timeout, 30_000)) do
      {:ok, state} -> {:ok, state}
      {:error, error} -> {:stop, {:shutdown, error}}
    end
  end

  @impl true
  def handle_call(:welcome, _from, s), do: {:reply, s.welcome, s}

  @impl true
  def handle_info(:reconnect, s) do
    case connect(s, 30_000) do
      {:ok, s} -> {:noreply, s}
      {:error, %Error{code: :unavailable}} -> {:noreply, retry_later(s)}
      {:error, error} -> stop_for(error, s)
    end
  end

  def handle_info({:result, call_id, request}, s) do
    s = forget_call(s, call_id)

    if s.reader do
      _ = RPC.send_message(s.reader, request)
    end

    {:noreply, s}
  end

  def handle_info({:EXIT, pid, _reason}, s) do
    # A call's task ended; if it never answered (it crashed), the error was sent from it.
    case Map.pop(s.tasks, pid) do
      {nil, _} -> {:noreply, s}
      {call_id, tasks} -> {:noreply, %{s | tasks: tasks, calls: Map.delete(s.calls, call_id)}}
    end
  end

  def handle_info(msg, %{reader: reader} = s) when reader != nil do
    case RPC.handle_message(reader, msg) do
      :unknown ->
        {:noreply, s}

      {:events, events, reader} ->
        {:noreply, Enum.reduce(events, %{s | reader: reader}, &handle_event/2)}

      {:done, result, events} ->
        s = Enum.reduce(events, %{s | reader: nil}, &handle_event/2)
        s = cancel_all(s)

        case result do
          :ok -> {:noreply, retry_later(s)}
          {:error, %Error{code: :unavailable}} -> {:noreply, retry_later(s)}
          {:error, error} -> stop_for(error, s)
        end
    end
  end

  def handle_info(_msg, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, s) do
    _ = cancel_all(s)
    if s.reader, do: RPC.cancel(s.reader)
    :ok
  end

  # -- connecting --------------------------------------------------------------------------

  defp connect(s, timeout) do
    hello = %PB.ConnectRequest{
      message:
        {:hello,
         %PB.HostHello{
           session_id: s.session.id,
           tools: for({name, t} <- s.tools, do: host_tool(name, t)),
           metrics:
             for(
               {name, m} <- s.metrics,
               do: %PB.HostMetric{name: name, description: m[:description] || ""}
             ),
           lms: for({name, _} <- s.lms, do: %PB.HostLM{name: name})
         }}
    }

    with {:ok, reader} <- RPC.open_bidi(s.session.conn, :Connect, hello, []) do
      await_welcome(%{s | reader: reader}, deadline(timeout))
    end
  end

  defp await_welcome(s, deadline) do
    case Streams.next(s.reader, max(deadline - System.monotonic_time(:millisecond), 0)) do
      :timeout ->
        RPC.cancel(s.reader)
        {:error, Error.client(:deadline_exceeded, "no welcome from the sidecar")}

      {:events, [], reader} ->
        await_welcome(%{s | reader: reader}, deadline)

      {:events, [%{message: {:welcome, w}} | rest], reader} ->
        welcome = %{
          connection_id: w.connection_id,
          tools: w.tools,
          metrics: w.metrics,
          lms: w.lms
        }

        if s.notify, do: send(s.notify, {:dspy_bridge, :host_connected, welcome})
        s = %{s | reader: reader, welcome: welcome, backoff: 50}
        {:ok, Enum.reduce(rest, s, &handle_event/2)}

      {:done, {:error, error}, _} ->
        {:error, error}

      {:done, :ok, _} ->
        {:error, Error.client(:unavailable, "the sidecar ended the stream before its welcome")}
    end
  end

  defp retry_later(s) do
    Process.send_after(self(), :reconnect, s.backoff)
    %{s | reader: nil, backoff: min(s.backoff * 2, @max_backoff)}
  end

  defp stop_for(error, s) do
    Logger.warning("dspy_bridge host stopped: #{Exception.message(error)}")
    {:stop, :normal, s}
  end

  # -- calls -------------------------------------------------------------------------------

  defp handle_event(%{message: {:tool_call, c}}, s) do
    call = %{
      module_id: c.module_id,
      job_id: c.job_id,
      timeout_ms: c.timeout_ms,
      deadline: Convert.time(c.deadline)
    }

    args = Values.from_struct(c.arguments)

    run(s, c.call_id, fn -> tool_result(c.call_id, invoke(s, :tools, c.tool, [args, call])) end)
  end

  defp handle_event(%{message: {:metric_call, c}}, s) do
    call = %{
      inputs: Values.from_value_map(c.inputs),
      labels: Values.from_value_map(c.labels),
      prediction: Values.from_value_map(c.prediction),
      options: Values.from_struct(c.options),
      job_id: c.job_id,
      timeout_ms: c.timeout_ms,
      deadline: Convert.time(c.deadline)
    }

    run(s, c.call_id, fn -> metric_result(c.call_id, invoke(s, :metrics, c.metric, [call])) end)
  end

  defp handle_event(%{message: {:lm_call, c}}, s) do
    call = %{
      messages: Enum.map(c.messages, &Values.from_struct/1),
      options: Values.from_struct(c.options),
      timeout_ms: c.timeout_ms,
      deadline: Convert.time(c.deadline)
    }

    run(s, c.call_id, fn -> lm_result(c.call_id, invoke(s, :lms, c.lm, [call])) end)
  end

  defp handle_event(%{message: {:cancel, %{call_id: call_id}}}, s) do
    case Map.fetch(s.calls, call_id) do
      {:ok, pid} ->
        Process.exit(pid, :kill)
        forget_call(s, call_id)

      :error ->
        s
    end
  end

  defp handle_event(_other, s), do: s

  defp run(s, call_id, fun) do
    host = self()
    {:ok, pid} = Task.start_link(fn -> send(host, {:result, call_id, safely(fun)}) end)
    %{s | calls: Map.put(s.calls, call_id, pid), tasks: Map.put(s.tasks, pid, call_id)}
  end

  defp safely(fun) do
    fun.()
  rescue
    error -> {:raised, Exception.message(error)}
  end

  defp forget_call(s, call_id) do
    case Map.pop(s.calls, call_id) do
      {nil, _} -> s
      {pid, calls} -> %{s | calls: calls, tasks: Map.delete(s.tasks, pid)}
    end
  end

  defp cancel_all(s) do
    for {_call_id, pid} <- s.calls, do: Process.exit(pid, :kill)
    %{s | calls: %{}, tasks: %{}}
  end

  # The function for a name: the map's `:fun`, or the handler module's callback.
  defp invoke(s, kind, name, args) do
    entry = Map.get(Map.fetch!(s, kind), name, %{})

    case {entry[:fun], s.handler} do
      {fun, _} when is_function(fun) -> apply(fun, Enum.take(args, arity(fun)))
      {nil, handler} when handler != nil -> apply(handler, callback(kind), [name | args])
      _ -> {:error, "no function for #{name}"}
    end
  rescue
    error -> {:error, "#{inspect(error.__struct__)}: #{Exception.message(error)}"}
  end

  defp arity(fun), do: :erlang.fun_info(fun)[:arity]

  defp callback(:tools), do: :handle_tool
  defp callback(:metrics), do: :handle_metric
  defp callback(:lms), do: :handle_lm

  defp tool_result(call_id, {:ok, value}) do
    outcome =
      try do
        {:output, Values.to_value(value)}
      rescue
        error in ArgumentError -> {:error, Exception.message(error)}
      end

    %PB.ConnectRequest{
      message: {:tool_result, %PB.HostToolResult{call_id: call_id, outcome: outcome}}
    }
  end

  defp tool_result(call_id, other),
    do: %PB.ConnectRequest{
      message:
        {:tool_result, %PB.HostToolResult{call_id: call_id, outcome: {:error, error_text(other)}}}
    }

  defp metric_result(call_id, {:ok, score}) when is_number(score),
    do: metric_result(call_id, {:ok, score, ""})

  defp metric_result(call_id, {:ok, score, feedback}) when is_number(score) do
    result = %PB.HostMetricResult{
      call_id: call_id,
      score: score * 1.0,
      feedback: to_string(feedback)
    }

    %PB.ConnectRequest{message: {:metric_result, result}}
  end

  defp metric_result(call_id, other) do
    result = %PB.HostMetricResult{call_id: call_id, error: error_text(other)}
    %PB.ConnectRequest{message: {:metric_result, result}}
  end

  defp lm_result(call_id, {:ok, text}) when is_binary(text),
    do: lm_result(call_id, {:ok, text, %{}})

  defp lm_result(call_id, {:ok, text, usage}) when is_binary(text) do
    usage = %PB.Usage{
      lm_calls: Map.get(usage, :lm_calls, 1),
      prompt_tokens: Map.get(usage, :prompt_tokens, 0),
      completion_tokens: Map.get(usage, :completion_tokens, 0),
      cost_usd: Map.get(usage, :cost_usd, 0.0) * 1.0
    }

    %PB.ConnectRequest{
      message: {:lm_result, %PB.HostLMResult{call_id: call_id, text: text, usage: usage}}
    }
  end

  defp lm_result(call_id, other),
    do: %PB.ConnectRequest{
      message: {:lm_result, %PB.HostLMResult{call_id: call_id, error: error_text(other)}}
    }

  defp error_text({:error, message}) when is_binary(message), do: message
  defp error_text({:error, other}), do: inspect(other)
  defp error_text({:raised, message}), do: message
  defp error_text(other), do: "unexpected return value: #{inspect(other)}"

  defp host_tool(name, t) do
    %PB.HostTool{
      name: name,
      description: t[:description] || "",
      parameters: Values.to_struct(t[:parameters] || %{type: "object", properties: %{}}),
      timeout_ms: t[:timeout_ms] || 0,
      max_concurrency: t[:max_concurrency] || 0
    }
  end

  # Names given as strings or as maps with `:name`.
  defp index(entries) do
    Map.new(entries, fn
      name when is_binary(name) -> {name, %{}}
      %{name: name} = entry -> {to_string(name), entry}
    end)
  end

  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms
end
