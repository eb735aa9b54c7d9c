defmodule DSPyBridge do
  @moduledoc """
  Elixir client for the dspy-bridge sidecar: sessions, typed variables, DSPy modules, execution,
  evaluation and optimization jobs, over gRPC.

      {:ok, conn} = DSPyBridge.connect("127.0.0.1:50051")
      :ok = DSPyBridge.wait_until_ready(conn)
      {:ok, session} = DSPyBridge.create_session(conn)
      {:ok, _module} = DSPyBridge.create_module(session, "Predict", "question -> answer", id: "qa")
      {:ok, prediction} = DSPyBridge.execute(session, "qa", %{question: "What is 2 + 2?"})
      prediction.outputs["answer"]

  Every call returns `{:ok, result}` or `{:error, %DSPyBridge.Error{}}` with the sidecar's
  status code, stable `reason`, metadata and field violations decoded from the status details.
  Values go in and come out as plain Elixir terms (see `DSPyBridge.Values`): integers stay
  integers, maps and lists are JSON, `%DSPyBridge.Tensor{}` is a tensor.

  Every call takes `timeout: ms` (default: the connection's, 30 s). It is sent as the gRPC
  deadline, and executions also send it as the server's `timeout_ms`, so the sidecar stops the
  work when the caller stops waiting.
  """

  alias DSPyBridge.{Connection, Convert, Error, Job, Prediction, RPC, Session, Values, Variable}
  alias DspyBridge.V1, as: PB

  @execution_margin_ms 1_000

  @typedoc "A result of this API."
  @type result(t) :: {:ok, t} | {:error, Error.t()}

  # -- connection --------------------------------------------------------------------------

  @doc """
  Starts a connection to a sidecar at `address` (`"host:port"`) under this application's
  supervisor and returns it. Options are those of `DSPyBridge.Connection`. The connection is
  made in the background: use `wait_until_ready/2` before the first call, or handle
  `:unavailable`.
  """
  @spec connect(String.t(), keyword()) :: {:ok, pid()} | {:error, term()}
  def connect(address, opts \\ []) do
    DynamicSupervisor.start_child(
      DSPyBridge.ConnectionSupervisor,
      {Connection, Keyword.put(opts, :address, address)}
    )
  end

  @doc "Closes a connection started with `connect/2`."
  @spec disconnect(Connection.t()) :: :ok
  def disconnect(conn), do: Connection.close(conn)

  @doc "Waits up to `timeout` ms for the connection to be up."
  @spec wait_until_ready(Connection.t(), timeout()) :: :ok | {:error, Error.t()}
  defdelegate wait_until_ready(conn, timeout \\ 10_000), to: Connection

  @doc "Pings the sidecar: `%{message:, version:, server_time:}`."
  @spec ping(Connection.t(), String.t(), keyword()) :: result(map())
  def ping(conn, message \\ "", opts \\ []) do
    with {:ok, r} <- RPC.unary(conn, :Ping, %PB.PingRequest{message: message}, opts) do
      {:ok, %{message: r.message, version: r.version, server_time: Convert.time(r.server_time)}}
    end
  end

  @doc """
  The gRPC health status of the sidecar (`:serving`, `:not_serving`, ...); `service` defaults to
  the whole server (`""`).
  """
  @spec health(Connection.t(), String.t(), keyword()) :: result(atom())
  def health(conn, service \\ "", opts \\ []) do
    request = %Grpc.Health.V1.HealthCheckRequest{service: service}

    with {:ok, r} <- RPC.unary(conn, :Check, request, opts) do
      {:ok, r.status |> Atom.to_string() |> String.downcase() |> String.to_atom()}
    end
  end

  @doc """
  What the sidecar offers and how it is configured: versions, module types, optimizers, metrics,
  variable types, store backend, pool figures, limits and default LM.
  """
  @spec server_info(Connection.t(), keyword()) :: result(map())
  def server_info(conn, opts \\ []) do
    with {:ok, r} <- RPC.unary(conn, :GetServerInfo, %PB.GetServerInfoRequest{}, opts) do
      {:ok,
       %{
         bridge_version: r.bridge_version,
         dspy_version: r.dspy_version,
         python_version: r.python_version,
         module_types: r.module_types,
         optimizers: r.optimizers,
         metrics: r.metrics,
         variable_types: Enum.map(r.variable_types, &Convert.enum(&1, "VARIABLE_TYPE_")),
         store_backend: r.store_backend,
         pool:
           r.pool &&
             Map.take(r.pool, [:workers, :workers_alive, :restarts, :queue_depth, :in_flight]),
         limits: r.limits && limits(r.limits),
         default_lm_model: r.default_lm_model,
         start_time: Convert.time(r.start_time)
       }}
    end
  end

  # The limits as nested plain maps; a job's time limit in milliseconds (nil: none).
  defp limits(limits) do
    Map.update!(plain(limits), :jobs, fn
      nil ->
        nil

      jobs ->
        {duration, jobs} = Map.pop(jobs, :max_job_duration)

        Map.put(
          jobs,
          :max_job_duration_ms,
          duration && duration.seconds * 1000 + div(duration.nanos, 1_000_000)
        )
    end)
  end

  defp plain(%_{} = message) do
    message
    |> Map.from_struct()
    |> Map.delete(:__unknown_fields__)
    |> Map.new(fn {key, value} -> {key, if(is_struct(value), do: plain(value), else: value)} end)
  end

  # -- sessions ----------------------------------------------------------------------------

  @doc """
  Creates a session. Options: `:id` (the identifier to use; the sidecar makes one otherwise),
  `:ttl_seconds` (idle expiry; 0 = server default), `:metadata` (string labels), `:timeout`.
  """
  @spec create_session(Connection.t(), keyword()) :: result(Session.t())
  def create_session(conn, opts \\ []) do
    request = %PB.CreateSessionRequest{
      session_id: Keyword.get(opts, :id, ""),
      ttl_seconds: Keyword.get(opts, :ttl_seconds, 0),
      metadata: string_map(Keyword.get(opts, :metadata, %{}))
    }

    with {:ok, r} <- RPC.unary(conn, :CreateSession, request, opts) do
      {:ok, Session.from_proto(conn, r.session)}
    end
  end

  @doc "A handle on an existing session, without a call (see `get_session/2` to fetch it)."
  @spec session(Connection.t(), String.t()) :: Session.t()
  def session(conn, id), do: %Session{id: id, conn: conn}

  @doc "The session as the sidecar has it now (`:not_found` when unknown or expired)."
  @spec get_session(Session.t(), keyword()) :: result(Session.t())
  def get_session(%Session{} = s, opts \\ []) do
    with {:ok, r} <- call(s, :GetSession, %PB.GetSessionRequest{session_id: s.id}, opts) do
      {:ok, Session.from_proto(s.conn, r.session)}
    end
  end

  @doc "Every session, oldest first (pages are fetched until the last one)."
  @spec list_sessions(Connection.t(), keyword()) :: result([Session.t()])
  def list_sessions(conn, opts \\ []), do: list_sessions(conn, opts, "", [])

  defp list_sessions(conn, opts, token, acc) do
    request = %PB.ListSessionsRequest{
      page_size: Keyword.get(opts, :page_size, 0),
      page_token: token
    }

    with {:ok, r} <- RPC.unary(conn, :ListSessions, request, opts) do
      acc = acc ++ Enum.map(r.sessions, &Session.from_proto(conn, &1))

      if r.next_page_token == "",
        do: {:ok, acc},
        else: list_sessions(conn, opts, r.next_page_token, acc)
    end
  end

  @doc "Deletes the session with everything it owns; its watches end with `:session_ended`."
  @spec delete_session(Session.t(), keyword()) :: :ok | {:error, Error.t()}
  def delete_session(%Session{} = s, opts \\ []) do
    ok(call(s, :DeleteSession, %PB.DeleteSessionRequest{session_id: s.id}, opts))
  end

  @doc "Extends the session's TTL from now; returns it with its new `expire_time`."
  @spec heartbeat(Session.t(), keyword()) :: result(Session.t())
  def heartbeat(%Session{} = s, opts \\ []) do
    with {:ok, r} <- call(s, :Heartbeat, %PB.HeartbeatRequest{session_id: s.id}, opts) do
      {:ok, Session.from_proto(s.conn, r.session)}
    end
  end

  @doc """
  Sets the session's language model: a LiteLLM model string (`"openai/gpt-4o-mini"`) or
  `"offline"`. Options: `:api_base`, `:api_key_env` (the name of a server environment variable
  holding the key; keys are never sent), `:options` (e.g. `%{temperature: 0.2}`).
  """
  @spec configure_lm(Session.t(), String.t(), keyword()) :: result(Session.t())
  def configure_lm(%Session{} = s, model, opts \\ []) do
    request = %PB.ConfigureLMRequest{session_id: s.id, lm: lm_config(model, opts)}

    with {:ok, r} <- call(s, :ConfigureLM, request, opts) do
      {:ok, Session.from_proto(s.conn, r.session)}
    end
  end

  # -- variables ---------------------------------------------------------------------------

  @doc """
  Registers a typed variable and returns it at version 1.

  `type` is `:float`, `:integer`, `:string`, `:boolean`, `:choice`, `:module`, `:embedding`,
  `:tensor` or `:json`. Constraint options: `:min`, `:max`, `:step`, `:choices`, `:pattern`,
  `:min_length`, `:max_length`, `:dims`, `:dtype`; also `:description`, `:metadata`.
  """
  @spec register_variable(Session.t(), String.t(), atom(), term(), keyword()) ::
          result(Variable.t())
  def register_variable(%Session{} = s, name, type, value, opts \\ []) do
    request = %PB.RegisterVariableRequest{
      session_id: s.id,
      name: name,
      type: Convert.proto_enum(type, "VARIABLE_TYPE_", PB.VariableType),
      initial_value: Values.to_value(value),
      constraints: constraints(opts),
      description: Keyword.get(opts, :description, ""),
      metadata: string_map(Keyword.get(opts, :metadata, %{}))
    }

    variable(call(s, :RegisterVariable, request, opts))
  end

  @doc "A variable by name or id."
  @spec get_variable(Session.t(), String.t(), keyword()) :: result(Variable.t())
  def get_variable(%Session{} = s, name, opts \\ []) do
    variable(call(s, :GetVariable, %PB.GetVariableRequest{session_id: s.id, name: name}, opts))
  end

  @doc "The session's variables whose names match a glob `pattern` (all by default), by name."
  @spec list_variables(Session.t(), String.t(), keyword()) :: result([Variable.t()])
  def list_variables(%Session{} = s, pattern \\ "", opts \\ []) do
    request = %PB.ListVariablesRequest{session_id: s.id, pattern: pattern}

    with {:ok, r} <- call(s, :ListVariables, request, opts) do
      {:ok, Enum.map(r.variables, &Variable.from_proto/1)}
    end
  end

  @doc "Deletes a variable and its history (`:failed_precondition` while a module is bound to it)."
  @spec delete_variable(Session.t(), String.t(), keyword()) :: :ok | {:error, Error.t()}
  def delete_variable(%Session{} = s, name, opts \\ []) do
    ok(call(s, :DeleteVariable, %PB.DeleteVariableRequest{session_id: s.id, name: name}, opts))
  end

  @doc """
  Writes a new version of a variable. Options: `:expected_version` (write only if it is the
  current version; otherwise `:aborted` with reason `"VERSION_CONFLICT"` and the current version
  in `metadata`), `:source`, `:reason`.
  """
  @spec update_variable(Session.t(), String.t(), term(), keyword()) :: result(Variable.t())
  def update_variable(%Session{} = s, name, value, opts \\ []) do
    request = %PB.UpdateVariableRequest{
      session_id: s.id,
      name: name,
      value: Values.to_value(value),
      expected_version: Keyword.get(opts, :expected_version),
      source: Keyword.get(opts, :source, ""),
      reason: Keyword.get(opts, :reason, "")
    }

    variable(call(s, :UpdateVariable, request, opts))
  end

  @doc """
  Writes several variables. `writes` is a list of `{name, value}` or
  `{name, value, expected_version}`. With `atomic: true` all are written or none (the first
  failure is the call's error) and the result is the list of variables; without, each write
  succeeds or fails on its own and the result is a list of `{:ok, variable}` /
  `{:error, error}` in request order. Options: `:atomic`, `:source`, `:reason`.
  """
  @spec batch_update(Session.t(), [tuple()], keyword()) :: result(list())
  def batch_update(%Session{} = s, writes, opts \\ []) do
    atomic = Keyword.get(opts, :atomic, false)

    request = %PB.BatchUpdateVariablesRequest{
      session_id: s.id,
      writes: Enum.map(writes, &write/1),
      atomic: atomic,
      source: Keyword.get(opts, :source, ""),
      reason: Keyword.get(opts, :reason, "")
    }

    with {:ok, r} <- call(s, :BatchUpdateVariables, request, opts) do
      results =
        for item <- r.results do
          case Error.from_status(item.error) do
            nil -> {:ok, Variable.from_proto(item.variable)}
            error -> {:error, error}
          end
        end

      {:ok, if(atomic, do: Enum.map(results, fn {:ok, v} -> v end), else: results)}
    end
  end

  @doc "A variable's versions, newest first (`limit: n` for the last n)."
  @spec history(Session.t(), String.t(), keyword()) :: result([map()])
  def history(%Session{} = s, name, opts \\ []) do
    request = %PB.GetVariableHistoryRequest{
      session_id: s.id,
      name: name,
      limit: Keyword.get(opts, :limit, 0)
    }

    with {:ok, r} <- call(s, :GetVariableHistory, request, opts) do
      {:ok,
       for e <- r.entries do
         %{
           version: e.version,
           value: Values.from_value(e.value),
           source: e.source,
           reason: e.reason,
           update_time: Convert.time(e.update_time)
         }
       end}
    end
  end

  @doc """
  Writes a new version equal to `target_version`'s value. Options: `:expected_version`,
  `:source`, `:reason`.
  """
  @spec rollback(Session.t(), String.t(), pos_integer(), keyword()) :: result(Variable.t())
  def rollback(%Session{} = s, name, target_version, opts \\ []) do
    request = %PB.RollbackVariableRequest{
      session_id: s.id,
      name: name,
      target_version: target_version,
      expected_version: Keyword.get(opts, :expected_version),
      source: Keyword.get(opts, :source, ""),
      reason: Keyword.get(opts, :reason, "")
    }

    variable(call(s, :RollbackVariable, request, opts))
  end

  @doc """
  Watches variables (`names`; `[]` for every variable, including ones registered later) in a
  supervised process that sends the `to:` process (default: the caller) messages:

    * `{:dspy_bridge, :variable, %{kind: kind, variable: %Variable{}, reason: reason}}` with
      `kind` one of `:initial`, `:registered`, `:updated`, `:deleted`;
    * `{:dspy_bridge, :resync, %{variables: [...], skipped_changes: n, more: boolean}}` when
      the watcher fell behind: the current state replaces the versions it missed (a large state
      comes in parts; it is complete with the part whose `more` is `false`);
    * `{:dspy_bridge, :session_ended, reason}` (`"deleted"` or `"expired"`); the watch stops;
    * `{:dspy_bridge, :watch_error, %Error{}}` when the watch fails for good after it started;
      it stops.

  When the sidecar drains (`DRAINING`) or the connection drops, the watch reconnects and
  watches again with `include_initial`, so the receiver sees the current values as `:initial`
  changes. Options: `:to`, `:include_initial` (default `false`), `:timeout` (for the start,
  default 30 s). Stop it with `unwatch/1`; it also stops when the `to:` process exits.

  It returns once the sidecar has subscribed the watch, so every write made after it returns
  is delivered; a bad request (unknown session or variable) or an unreachable sidecar is
  `{:error, %DSPyBridge.Error{}}`.
  """
  @spec watch(Session.t(), [String.t()], keyword()) :: {:ok, pid()} | {:error, Error.t()}
  def watch(%Session{} = s, names, opts \\ []) do
    opts = Keyword.put_new(opts, :to, self())

    case DynamicSupervisor.start_child(
           DSPyBridge.WatchSupervisor,
           {DSPyBridge.Watch, {s, names, opts}}
         ) do
      {:error, {:shutdown, %Error{} = error}} -> {:error, error}
      other -> other
    end
  end

  @doc "Stops a watch started with `watch/3`."
  @spec unwatch(pid()) :: :ok
  def unwatch(pid), do: DSPyBridge.Watch.stop(pid)

  # -- modules -----------------------------------------------------------------------------

  @doc """
  Creates a DSPy module and returns it at version 1. `signature` is DSPy's string form
  (`"question -> answer: int"`) or a map `%{fields: [...], instructions: ...}`. Options: `:id`,
  `:config` (map), `:bindings` (module parameter → variable name), `:lm` (model string),
  `:lm_options`.
  """
  @spec create_module(Session.t(), String.t(), String.t() | map(), keyword()) ::
          result(DSPyBridge.Module.t())
  def create_module(%Session{} = s, module_type, signature, opts \\ []) do
    request = %PB.CreateModuleRequest{
      session_id: s.id,
      module_id: Keyword.get(opts, :id, ""),
      module_type: module_type,
      signature: signature(signature),
      config: Values.to_struct(Keyword.get(opts, :config)),
      variable_bindings: string_map(Keyword.get(opts, :bindings, %{})),
      lm: opts[:lm] && lm_config(opts[:lm], Keyword.get(opts, :lm_options, []))
    }

    module_result(call(s, :CreateModule, request, opts))
  end

  @doc "A module at its current version, or at `version: n`."
  @spec get_module(Session.t(), String.t(), keyword()) :: result(DSPyBridge.Module.t())
  def get_module(%Session{} = s, module_id, opts \\ []) do
    request = %PB.GetModuleRequest{
      session_id: s.id,
      module_id: module_id,
      version: Keyword.get(opts, :version, 0)
    }

    module_result(call(s, :GetModule, request, opts))
  end

  @doc "The session's modules, in id order."
  @spec list_modules(Session.t(), keyword()) :: result([DSPyBridge.Module.t()])
  def list_modules(%Session{} = s, opts \\ []) do
    with {:ok, r} <- call(s, :ListModules, %PB.ListModulesRequest{session_id: s.id}, opts) do
      {:ok, Enum.map(r.modules, &DSPyBridge.Module.from_proto/1)}
    end
  end

  @doc "Deletes a module with all its versions."
  @spec delete_module(Session.t(), String.t(), keyword()) :: :ok | {:error, Error.t()}
  def delete_module(%Session{} = s, module_id, opts \\ []) do
    request = %PB.DeleteModuleRequest{session_id: s.id, module_id: module_id}
    ok(call(s, :DeleteModule, request, opts))
  end

  @doc "The module's DSPy state (demos, instructions) as DSPy's `save()` JSON; `version: n`."
  @spec export_state(Session.t(), String.t(), keyword()) :: result(String.t())
  def export_state(%Session{} = s, module_id, opts \\ []) do
    request = %PB.ExportModuleStateRequest{
      session_id: s.id,
      module_id: module_id,
      version: Keyword.get(opts, :version, 0)
    }

    with {:ok, r} <- call(s, :ExportModuleState, request, opts), do: {:ok, r.state_json}
  end

  @doc "Replaces the module's DSPy state (JSON); a new module version. `:expected_version`."
  @spec import_state(Session.t(), String.t(), String.t(), keyword()) ::
          result(DSPyBridge.Module.t())
  def import_state(%Session{} = s, module_id, state_json, opts \\ []) do
    request = %PB.ImportModuleStateRequest{
      session_id: s.id,
      module_id: module_id,
      state_json: state_json,
      expected_version: Keyword.get(opts, :expected_version)
    }

    module_result(call(s, :ImportModuleState, request, opts))
  end

  @doc "Makes an old module version current again (as a new version). `:expected_version`."
  @spec revert_module(Session.t(), String.t(), pos_integer(), keyword()) ::
          result(DSPyBridge.Module.t())
  def revert_module(%Session{} = s, module_id, to_version, opts \\ []) do
    request = %PB.RevertModuleRequest{
      session_id: s.id,
      module_id: module_id,
      to_version: to_version,
      expected_version: Keyword.get(opts, :expected_version)
    }

    module_result(call(s, :RevertModule, request, opts))
  end

  # -- execution ---------------------------------------------------------------------------

  @doc """
  Runs a module once on `inputs` (a map or keyword list, one value per input field).

  Options: `:overrides` (variable name → value used instead of the bound variable for this call
  only), `:include_trace`, `:timeout` (ms; sent to the sidecar as the execution's
  `timeout_ms` and as the gRPC deadline).
  """
  @spec execute(Session.t(), String.t(), map() | keyword(), keyword()) :: result(Prediction.t())
  def execute(%Session{} = s, module_id, inputs, opts \\ []) do
    request = %PB.ExecuteRequest{
      session_id: s.id,
      module_id: module_id,
      inputs: Values.to_value_map(inputs),
      variable_overrides: Values.to_value_map(Keyword.get(opts, :overrides, %{})),
      options: execute_options(s, opts)
    }

    with {:ok, r} <- call(s, :Execute, request, execution_call_opts(opts)),
         do: {:ok, Prediction.from_proto(r)}
  end

  @doc """
  Runs a module on many inputs with bounded concurrency. Returns
  `%{results: [...], usage:, latency_ms:, module_version:, variables_used:}` where each result
  is `{:ok, %{outputs:, usage:, latency_ms:, trace:}}` or `{:error, %Error{}}`: one item's
  failure does not fail the batch. Options as `execute/4`, plus `:max_concurrency`.
  """
  @spec execute_batch(Session.t(), String.t(), [map() | keyword()], keyword()) :: result(map())
  def execute_batch(%Session{} = s, module_id, items, opts \\ []) do
    request = %PB.ExecuteBatchRequest{
      session_id: s.id,
      module_id: module_id,
      items: Enum.map(items, &%PB.ExecuteBatchItem{inputs: Values.to_value_map(&1)}),
      variable_overrides: Values.to_value_map(Keyword.get(opts, :overrides, %{})),
      options: execute_options(s, opts),
      max_concurrency: Keyword.get(opts, :max_concurrency, 0)
    }

    with {:ok, r} <- call(s, :ExecuteBatch, request, execution_call_opts(opts)) do
      results =
        for item <- r.results do
          case Error.from_status(item.error) do
            nil ->
              {:ok,
               %{
                 outputs: Values.from_value_map(item.outputs),
                 usage: Convert.usage(item.usage),
                 latency_ms: item.latency_ms,
                 trace: Convert.trace(item.trace)
               }}

            error ->
              {:error, error}
          end
        end

      {:ok,
       %{
         results: results,
         usage: Convert.usage(r.usage),
         latency_ms: r.latency_ms,
         module_version: r.module_version,
         variables_used: Convert.variables_used(r.variables_used)
       }}
    end
  end

  @doc """
  Runs a module once, streaming. Without `:to`, returns `{:ok, stream}`: a lazy `Stream` of
  `{:chunk, %{field:, text:, last:}}`, `{:status, message}` and finally `{:result,
  %Prediction{}}` (an error mid-stream is raised as `%DSPyBridge.Error{}`; halting the stream
  early cancels the call). With `to: pid`, the events are sent as
  `{:dspy_bridge, :execute_stream, ref, event}` messages from a supervised process, ending with
  `{:dspy_bridge, :execute_stream, ref, {:error, error}}` or the `:result`, and
  `{:ok, ref}` is returned. Options as `execute/4`.
  """
  @spec execute_stream(Session.t(), String.t(), map() | keyword(), keyword()) ::
          result(Enumerable.t() | reference())
  def execute_stream(%Session{} = s, module_id, inputs, opts \\ []) do
    request = %PB.ExecuteStreamRequest{
      session_id: s.id,
      module_id: module_id,
      inputs: Values.to_value_map(inputs),
      variable_overrides: Values.to_value_map(Keyword.get(opts, :overrides, %{})),
      options: execute_options(s, opts)
    }

    DSPyBridge.Streams.start(
      s.conn,
      :ExecuteStream,
      request,
      &stream_event/1,
      execution_call_opts(opts)
    )
  end

  defp stream_event(%PB.ExecuteStreamResponse{event: {:chunk, c}}),
    do: {:chunk, %{field: c.field, text: c.text, last: c.last}}

  defp stream_event(%PB.ExecuteStreamResponse{event: {:status, st}}), do: {:status, st.message}

  defp stream_event(%PB.ExecuteStreamResponse{event: {:result, r}}),
    do: {:result, Prediction.from_proto(r)}

  # -- evaluation --------------------------------------------------------------------------

  @doc """
  Runs a module over a dataset and scores every prediction with a built-in `metric`
  (`"exact_match"`, ...). `dataset` is a list of `{inputs, labels}` pairs or
  `%{inputs: ..., labels: ...}` maps. Options: `:metric_options`, `:num_threads`, `:overrides`,
  `:module_version`, `:progress` (a function called as `progress.(completed, total)`; the call
  then streams progress). Returns `%{score:, results: [...], usage:, module_version:,
  latency_ms:, variables_used:}`; each result is
  `%{index:, outputs:, score:, error: nil | %Error{}, latency_ms:}`.
  """
  @spec evaluate(Session.t(), String.t(), list(), String.t(), keyword()) :: result(map())
  def evaluate(%Session{} = s, module_id, dataset, metric, opts \\ []) do
    request = %PB.EvaluateRequest{
      session_id: s.id,
      module_id: module_id,
      dataset: Enum.map(dataset, &example/1),
      metric: metric(metric, opts),
      num_threads: Keyword.get(opts, :num_threads, 0),
      variable_overrides: Values.to_value_map(Keyword.get(opts, :overrides, %{})),
      module_version: Keyword.get(opts, :module_version, 0)
    }

    case Keyword.get(opts, :progress) do
      nil ->
        with {:ok, r} <- call(s, :Evaluate, request, opts), do: {:ok, evaluation(r)}

      progress ->
        stream_request = %PB.EvaluateStreamRequest{evaluation: request}

        with {:ok, stream} <-
               DSPyBridge.Streams.start(s.conn, :EvaluateStream, stream_request, & &1, opts) do
          try do
            Enum.reduce_while(stream, {:error, Error.client(:unavailable, "no result")}, fn
              %{event: {:progress, p}}, acc ->
                progress.(p.completed, p.total)
                {:cont, acc}

              %{event: {:result, r}}, _acc ->
                {:halt, {:ok, evaluation(r)}}
            end)
          rescue
            error in Error -> {:error, error}
          end
        end
    end
  end

  defp evaluation(r) do
    %{
      score: r.score,
      results:
        for res <- r.results do
          %{
            index: res.index,
            outputs: Values.from_value_map(res.outputs),
            score: res.score,
            error: Error.from_status(res.error),
            latency_ms: res.latency_ms
          }
        end,
      usage: Convert.usage(r.usage),
      module_version: r.module_version,
      variables_used: Convert.variables_used(r.variables_used),
      latency_ms: r.latency_ms
    }
  end

  # -- optimization jobs -------------------------------------------------------------------

  @doc """
  Starts an optimization job (a DSPy optimizer such as `"BootstrapFewShot"`, or
  `"VariableSearch"`) and returns it queued or running. Options: `:trainset` (required; as
  `evaluate/5`'s dataset), `:metric` (required), `:metric_options`, `:valset`, `:config`
  (optimizer arguments), `:apply` (make the result current when the job succeeds),
  `:variable_search` (a map as the `VariableSearchSpec` message, for `"VariableSearch"`).
  """
  @spec start_optimization(Session.t(), String.t(), String.t(), keyword()) :: result(Job.t())
  def start_optimization(%Session{} = s, module_id, optimizer, opts) do
    request = %PB.StartOptimizationRequest{
      session_id: s.id,
      module_id: module_id,
      optimizer: optimizer,
      config: Values.to_struct(Keyword.get(opts, :config)),
      trainset: Enum.map(Keyword.fetch!(opts, :trainset), &example/1),
      valset: Enum.map(Keyword.get(opts, :valset, []), &example/1),
      metric: metric(Keyword.fetch!(opts, :metric), opts),
      apply: Keyword.get(opts, :apply, false),
      variable_search: variable_search(Keyword.get(opts, :variable_search))
    }

    job(call(s, :StartOptimization, request, opts))
  end

  @doc "A job as it is now."
  @spec get_optimization(Session.t(), String.t(), keyword()) :: result(Job.t())
  def get_optimization(%Session{} = s, job_id, opts \\ []) do
    job(
      call(
        s,
        :GetOptimization,
        %PB.GetOptimizationRequest{session_id: s.id, job_id: job_id},
        opts
      )
    )
  end

  @doc "The session's jobs, oldest first (`module_id:` narrows them to one module)."
  @spec list_optimizations(Session.t(), keyword()) :: result([Job.t()])
  def list_optimizations(%Session{} = s, opts \\ []), do: list_jobs(s, opts, "", [])

  defp list_jobs(s, opts, token, acc) do
    request = %PB.ListOptimizationsRequest{
      session_id: s.id,
      module_id: Keyword.get(opts, :module_id, ""),
      page_size: Keyword.get(opts, :page_size, 0),
      page_token: token
    }

    with {:ok, r} <- call(s, :ListOptimizations, request, opts) do
      acc = acc ++ Enum.map(r.jobs, &Job.from_proto/1)
      if r.next_page_token == "", do: {:ok, acc}, else: list_jobs(s, opts, r.next_page_token, acc)
    end
  end

  @doc """
  Watches a job: without `:to`, `{:ok, stream}` of `%Job{}` snapshots ending with the terminal
  one; with `to: pid`, messages `{:dspy_bridge, :job, ref, %Job{}}` (and
  `{:dspy_bridge, :job, ref, {:error, error}}` on failure) and `{:ok, ref}`.
  """
  @spec watch_optimization(Session.t(), String.t(), keyword()) ::
          result(Enumerable.t() | reference())
  def watch_optimization(%Session{} = s, job_id, opts \\ []) do
    request = %PB.WatchOptimizationRequest{session_id: s.id, job_id: job_id}
    opts = Keyword.put(opts, :tag, :job)
    DSPyBridge.Streams.start(s.conn, :WatchOptimization, request, &Job.from_proto(&1.job), opts)
  end

  @doc """
  Waits for a job to end and returns it in its terminal state. `timeout:` bounds the wait
  (default `:infinity`).
  """
  @spec await_optimization(Session.t(), String.t(), keyword()) :: result(Job.t())
  def await_optimization(%Session{} = s, job_id, opts \\ []) do
    opts = Keyword.put_new(opts, :timeout, :infinity)

    with {:ok, stream} <- watch_optimization(s, job_id, Keyword.delete(opts, :to)) do
      try do
        case stream |> Stream.filter(&Job.terminal?/1) |> Enum.take(1) do
          [job] -> {:ok, job}
          [] -> {:error, Error.client(:unavailable, "the job watch ended before the job did")}
        end
      rescue
        error in Error -> {:error, error}
      end
    end
  end

  @doc "Stops a job; it ends `:cancelled` within seconds (a finished job is returned as is)."
  @spec cancel_optimization(Session.t(), String.t(), keyword()) :: result(Job.t())
  def cancel_optimization(%Session{} = s, job_id, opts \\ []) do
    request = %PB.CancelOptimizationRequest{session_id: s.id, job_id: job_id}
    job(call(s, :CancelOptimization, request, opts))
  end

  @doc """
  Makes a succeeded job's result current. Returns `%{job:, module:, variables:}`.
  `trial_number:` picks a VariableSearch trial other than the best.
  """
  @spec apply_optimization(Session.t(), String.t(), keyword()) :: result(map())
  def apply_optimization(%Session{} = s, job_id, opts \\ []) do
    request = %PB.ApplyOptimizationRequest{
      session_id: s.id,
      job_id: job_id,
      trial_number: Keyword.get(opts, :trial_number)
    }

    with {:ok, r} <- call(s, :ApplyOptimization, request, opts) do
      {:ok,
       %{
         job: Job.from_proto(r.job),
         module: DSPyBridge.Module.from_proto(r.module),
         variables: Enum.map(r.variables, &Variable.from_proto/1)
       }}
    end
  end

  # -- helpers -----------------------------------------------------------------------------

  defp call(%Session{conn: conn}, rpc, request, opts), do: RPC.unary(conn, rpc, request, opts)

  defp ok({:ok, _}), do: :ok
  defp ok({:error, _} = error), do: error

  defp variable({:ok, %{variable: v}}), do: {:ok, Variable.from_proto(v)}
  defp variable({:error, _} = error), do: error

  defp module_result({:ok, %{module: m}}), do: {:ok, DSPyBridge.Module.from_proto(m)}
  defp module_result({:error, _} = error), do: error

  defp job({:ok, %{job: j}}), do: {:ok, Job.from_proto(j)}
  defp job({:error, _} = error), do: error

  defp string_map(map), do: Map.new(map, fn {k, v} -> {Values.key(k), to_string(v)} end)

  defp lm_config(model, opts) do
    %PB.LMConfig{
      model: model,
      api_base: Keyword.get(opts, :api_base, ""),
      api_key_env: Keyword.get(opts, :api_key_env, ""),
      options: string_map(Keyword.get(opts, :options, %{}))
    }
  end

  defp constraints(opts) do
    %PB.VariableConstraints{
      min: float_or_nil(opts[:min]),
      max: float_or_nil(opts[:max]),
      step: float_or_nil(opts[:step]),
      choices: Enum.map(Keyword.get(opts, :choices, []), &to_string/1),
      pattern: Keyword.get(opts, :pattern, ""),
      min_length: opts[:min_length],
      max_length: opts[:max_length],
      dims: Keyword.get(opts, :dims, []),
      dtype: Keyword.get(opts, :dtype, "")
    }
  end

  defp float_or_nil(nil), do: nil
  defp float_or_nil(n) when is_number(n), do: n * 1.0

  defp write({name, value}), do: %PB.VariableWrite{name: name, value: Values.to_value(value)}

  defp write({name, value, expected}),
    do: %PB.VariableWrite{name: name, value: Values.to_value(value), expected_version: expected}

  defp signature(text) when is_binary(text), do: %PB.Signature{text: text}

  defp signature(%{} = sig) do
    fields =
      for f <- Map.get(sig, :fields, []) do
        %PB.SignatureField{
          name: to_string(f[:name]),
          role: Convert.proto_enum(f[:role], "FIELD_ROLE_", PB.FieldRole),
          type: Map.get(f, :type, ""),
          description: Map.get(f, :description, "")
        }
      end

    %PB.Signature{
      text: Map.get(sig, :text, ""),
      fields: fields,
      instructions: Map.get(sig, :instructions, "")
    }
  end

  # The execution's own deadline (`timeout_ms`) is the caller's timeout; the gRPC deadline is a
  # second longer, so the sidecar's DEADLINE_EXCEEDED with its details comes back first.
  defp execution_call_opts(opts) do
    case Keyword.get(opts, :timeout) do
      ms when is_integer(ms) -> Keyword.put(opts, :timeout, ms + @execution_margin_ms)
      _ -> opts
    end
  end

  defp execute_options(%Session{conn: conn}, opts) do
    # The caller's timeout is also the server's execution deadline: work the caller stopped
    # waiting for is stopped there too.
    timeout =
      case Keyword.get(opts, :timeout) do
        ms when is_integer(ms) -> ms
        _ -> 0
      end

    _ = conn

    %PB.ExecuteOptions{
      timeout_ms: timeout,
      include_trace: Keyword.get(opts, :include_trace, false)
    }
  end

  defp example({inputs, labels}),
    do: %PB.Example{inputs: Values.to_value_map(inputs), labels: Values.to_value_map(labels)}

  defp example(%{} = e),
    do: example({Map.get(e, :inputs, %{}), Map.get(e, :labels, %{})})

  defp metric(name, opts),
    do: %PB.MetricSpec{name: name, options: Values.to_struct(Keyword.get(opts, :metric_options))}

  defp variable_search(nil), do: nil

  defp variable_search(spec) do
    %PB.VariableSearchSpec{
      variables:
        for v <- Map.get(spec, :variables, []) do
          %PB.SearchVariable{
            name: v.name,
            low: float_or_nil(v[:low]),
            high: float_or_nil(v[:high]),
            step: float_or_nil(v[:step]),
            log: Map.get(v, :log, false),
            choices: Enum.map(Map.get(v, :choices, []), &Values.to_value/1)
          }
        end,
      sampler:
        Convert.proto_enum(
          Map.get(spec, :sampler, :unspecified),
          "SEARCH_SAMPLER_",
          PB.SearchSampler
        ),
      n_trials: Map.get(spec, :n_trials, 0),
      objectives:
        for o <- Map.get(spec, :objectives, []) do
          %PB.SearchObjective{
            name: o.name,
            direction:
              Convert.proto_enum(
                Map.get(o, :direction, :maximize),
                "OBJECTIVE_DIRECTION_",
                PB.ObjectiveDirection
              )
          }
        end,
      seed: spec[:seed]
    }
  end
end
