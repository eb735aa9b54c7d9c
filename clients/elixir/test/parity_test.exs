defmodule DSPyBridge.ParityTest do
  # Client parity: every RPC of BridgeService, as the repository's proto/ declares it, must be
  # reachable through this client's public API. The mapping below says which public function
  # reaches each RPC; the test fails naming any RPC without one (a new RPC the client lacks),
  # any mapping to an RPC the proto no longer has, any mapped function that is not exported
  # with that arity, and any call that does not actually send its RPC (seen by tracing the
  # requests the calls hand to their connection, against the suite's real sidecar).
  use DSPyBridge.Case, async: false

  alias DSPyBridge.Host

  @proto Path.expand("../../../proto/dspy_bridge/v1/bridge_service.proto", __DIR__)
  @external_resource @proto

  @dataset [{%{q: "x"}, %{a: "y"}}]

  # How long a call's traced request may take to be forwarded (only a failing check waits it out).
  @trace_wait_ms 10_000

  # RPC -> {module, function, arity} of the public function that reaches it, and a call of it.
  # The calls run in this order on one session; DeleteSession comes last so the others meet a
  # live session.
  defp client_calls do
    [
      {"Ping", {DSPyBridge, :ping, 1}, fn c, _s -> DSPyBridge.ping(c) end},
      {"GetServerInfo", {DSPyBridge, :server_info, 1}, fn c, _s -> DSPyBridge.server_info(c) end},
      {"CreateSession", {DSPyBridge, :create_session, 1},
       fn c, _s -> DSPyBridge.create_session(c) end},
      {"GetSession", {DSPyBridge, :get_session, 1}, fn _c, s -> DSPyBridge.get_session(s) end},
      {"ListSessions", {DSPyBridge, :list_sessions, 1},
       fn c, _s -> DSPyBridge.list_sessions(c) end},
      {"Heartbeat", {DSPyBridge, :heartbeat, 1}, fn _c, s -> DSPyBridge.heartbeat(s) end},
      {"ConfigureLM", {DSPyBridge, :configure_lm, 2},
       fn _c, s -> DSPyBridge.configure_lm(s, "offline") end},
      {"RegisterVariable", {DSPyBridge, :register_variable, 4},
       fn _c, s -> DSPyBridge.register_variable(s, "v", :float, 0.5) end},
      {"GetVariable", {DSPyBridge, :get_variable, 2},
       fn _c, s -> DSPyBridge.get_variable(s, "v") end},
      {"ListVariables", {DSPyBridge, :list_variables, 1},
       fn _c, s -> DSPyBridge.list_variables(s) end},
      {"UpdateVariable", {DSPyBridge, :update_variable, 3},
       fn _c, s -> DSPyBridge.update_variable(s, "v", 0.25) end},
      {"BatchUpdateVariables", {DSPyBridge, :batch_update, 2},
       fn _c, s -> DSPyBridge.batch_update(s, [{"v", 0.75}]) end},
      {"WatchVariables", {DSPyBridge, :watch, 2}, &__MODULE__.watch_and_stop/2},
      {"GetVariableHistory", {DSPyBridge, :history, 2},
       fn _c, s -> DSPyBridge.history(s, "v") end},
      {"RollbackVariable", {DSPyBridge, :rollback, 3},
       fn _c, s -> DSPyBridge.rollback(s, "v", 1) end},
      {"DeleteVariable", {DSPyBridge, :delete_variable, 2},
       fn _c, s -> DSPyBridge.delete_variable(s, "v") end},
      {"CreateModule", {DSPyBridge, :create_module, 3},
       fn _c, s -> DSPyBridge.create_module(s, "Predict", "q -> a", id: "m") end},
      {"GetModule", {DSPyBridge, :get_module, 2}, fn _c, s -> DSPyBridge.get_module(s, "m") end},
      {"ListModules", {DSPyBridge, :list_modules, 1}, fn _c, s -> DSPyBridge.list_modules(s) end},
      {"Execute", {DSPyBridge, :execute, 3},
       fn _c, s -> DSPyBridge.execute(s, "m", %{q: "x"}) end},
      {"ExecuteBatch", {DSPyBridge, :execute_batch, 3},
       fn _c, s -> DSPyBridge.execute_batch(s, "m", [%{q: "x"}]) end},
      {"ExecuteStream", {DSPyBridge, :execute_stream, 3},
       fn _c, s -> drain(DSPyBridge.execute_stream(s, "m", %{q: "x"})) end},
      {"ExportModuleState", {DSPyBridge, :export_state, 2},
       fn _c, s -> DSPyBridge.export_state(s, "m") end},
      {"ImportModuleState", {DSPyBridge, :import_state, 3},
       fn _c, s -> DSPyBridge.import_state(s, "m", "{}") end},
      {"RevertModule", {DSPyBridge, :revert_module, 3},
       fn _c, s -> DSPyBridge.revert_module(s, "m", 1) end},
      {"Evaluate", {DSPyBridge, :evaluate, 4},
       fn _c, s -> DSPyBridge.evaluate(s, "m", @dataset, "exact_match") end},
      {"EvaluateStream", {DSPyBridge, :evaluate, 5},
       fn _c, s ->
         DSPyBridge.evaluate(s, "m", @dataset, "exact_match",
           progress: fn _done, _total -> :ok end
         )
       end},
      {"StartOptimization", {DSPyBridge, :start_optimization, 4},
       fn _c, s ->
         DSPyBridge.start_optimization(s, "m", "LabeledFewShot",
           trainset: @dataset,
           metric: "exact_match"
         )
       end},
      {"GetOptimization", {DSPyBridge, :get_optimization, 2},
       fn _c, s -> DSPyBridge.get_optimization(s, "j") end},
      {"WatchOptimization", {DSPyBridge, :watch_optimization, 2},
       fn _c, s -> drain(DSPyBridge.watch_optimization(s, "j")) end},
      {"CancelOptimization", {DSPyBridge, :cancel_optimization, 2},
       fn _c, s -> DSPyBridge.cancel_optimization(s, "j") end},
      {"ListOptimizations", {DSPyBridge, :list_optimizations, 1},
       fn _c, s -> DSPyBridge.list_optimizations(s) end},
      {"ApplyOptimization", {DSPyBridge, :apply_optimization, 2},
       fn _c, s -> DSPyBridge.apply_optimization(s, "j") end},
      {"Connect", {Host, :start_link, 1}, &__MODULE__.serve_and_stop/2},
      {"DeleteModule", {DSPyBridge, :delete_module, 2},
       fn _c, s -> DSPyBridge.delete_module(s, "m") end},
      {"DeleteSession", {DSPyBridge, :delete_session, 1},
       fn _c, s -> DSPyBridge.delete_session(s) end}
    ]
  end

  # RPCs deliberately left out of this client, with the reason. None today.
  @omitted %{}

  @doc false
  def watch_and_stop(_conn, session) do
    with {:ok, pid} <- DSPyBridge.watch(session, ["v"]), do: DSPyBridge.unwatch(pid)
  end

  @doc false
  def serve_and_stop(_conn, session) do
    tool = %{name: "lookup", description: "echo", fun: fn args -> {:ok, args} end}
    with {:ok, host} <- Host.start_link(session: session, tools: [tool]), do: Host.stop(host)
  end

  # Reads a lazy stream to its end; an error it raises is the call's result.
  defp drain({:ok, stream}) do
    {:ok, Enum.to_list(stream)}
  rescue
    error in DSPyBridge.Error -> {:error, error}
  end

  defp drain(other), do: other

  # The RPC names of `BridgeService` in proto order, from the .proto text (comments dropped).
  defp proto_rpcs do
    text = @proto |> File.read!() |> String.replace(~r{//[^\n]*}, "")
    [_, package] = Regex.run(~r/^\s*package\s+([\w.]+)\s*;/m, text)
    [_, body] = Regex.run(~r/\bservice\s+BridgeService\s*\{([^}]*)\}/, text)
    {package, Regex.scan(~r/\brpc\s+(\w+)\s*\(/, body, capture: :all_but_first) |> List.flatten()}
  end

  test "maps every RPC of the proto to an exported public function (or an omission with a reason)" do
    {_package, rpcs} = proto_rpcs()
    assert length(rpcs) >= 30, "read #{length(rpcs)} RPCs from #{@proto}"
    mapped = Enum.map(client_calls(), &elem(&1, 0))

    missing = Enum.reject(rpcs, &(&1 in mapped or Map.has_key?(@omitted, &1)))
    assert missing == [], "RPCs the Elixir client does not reach: #{Enum.join(missing, ", ")}"

    stale = Enum.reject(mapped ++ Map.keys(@omitted), &(&1 in rpcs))
    assert stale == [], "mapped RPCs the proto does not declare: #{Enum.join(stale, ", ")}"

    assert mapped -- Enum.uniq(mapped) == [], "an RPC is mapped twice"
    both = Enum.filter(mapped, &Map.has_key?(@omitted, &1))
    assert both == [], "RPCs both mapped and omitted: #{Enum.join(both, ", ")}"
    for {rpc, reason} <- @omitted, do: assert(String.trim(reason) != "", "#{rpc}: say why")

    unexported =
      for {rpc, {mod, fun, arity}, _call} <- client_calls(),
          not (Code.ensure_loaded?(mod) and function_exported?(mod, fun, arity)),
          do: "#{rpc} (#{inspect(mod)}.#{fun}/#{arity})"

    assert unexported == [],
           "mapped functions that are not exported: #{Enum.join(unexported, ", ")}"
  end

  test "each mapped call sends its RPC", %{conn: conn, session: session} do
    {package, _rpcs} = proto_rpcs()
    test_pid = self()

    # Every request handed to this test's connection, from any process (watches and hosts run
    # under their own supervisors), is forwarded here as `{:sent, path}`.
    tracer =
      spawn_link(fn ->
        forward = fn forward ->
          receive do
            {:trace, _pid, :call, {DSPyBridge.Connection, :request, [_conn, path | _]}} ->
              send(test_pid, {:sent, path})
              forward.(forward)
          end
        end

        forward.(forward)
      end)

    match_spec = [{[:"$1", :_, :_, :_, :_], [{:==, :"$1", conn}], []}]
    :erlang.trace_pattern({DSPyBridge.Connection, :request, 5}, match_spec, [:global])
    :erlang.trace(:all, true, [:call, {:tracer, tracer}])

    on_exit(fn ->
      :erlang.trace(:all, false, [:call])
      :erlang.trace_pattern({DSPyBridge.Connection, :request, 5}, false, [:global])
    end)

    unreached =
      for {rpc, _mfa, call} <- client_calls(),
          path = "/#{package}.BridgeService/#{rpc}",
          not sends?(fn -> call.(conn, session) end, path),
          do: rpc

    assert unreached == [],
           "mapped calls that do not reach their RPC: #{Enum.join(unreached, ", ")}"
  end

  # Makes the call, then waits for its RPC among the requests traced (trace messages arrive
  # asynchronously, so a call that did send it is seen as soon as the tracer forwards it).
  defp sends?(call, path) do
    flush_sent()
    _result = call.()

    receive do
      {:sent, ^path} -> true
    after
      @trace_wait_ms -> false
    end
  end

  defp flush_sent do
    receive do
      {:sent, _path} -> flush_sent()
    after
      0 -> :ok
    end
  end
end
