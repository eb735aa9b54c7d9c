defmodule DSPyBridge.Convert do
  @moduledoc false
  # Protobuf messages → the plain structs and maps this library returns.

  alias DSPyBridge.{Error, Values}

  def time(nil), do: nil

  def time(%Google.Protobuf.Timestamp{seconds: s, nanos: n}),
    do: DateTime.from_unix!(s * 1_000_000 + div(n, 1000), :microsecond)

  # `VARIABLE_TYPE_FLOAT` → `:float`, `JOB_STATUS_SUCCEEDED` → `:succeeded`.
  def enum(atom, prefix) when is_atom(atom) do
    atom
    |> Atom.to_string()
    |> String.replace_prefix(prefix, "")
    |> String.downcase()
    |> String.to_atom()
  end

  def enum(number, _prefix) when is_integer(number), do: number

  # `:float` → `:VARIABLE_TYPE_FLOAT` of `enum_mod`; an unknown name is an ArgumentError.
  def proto_enum(name, prefix, enum_mod) when is_atom(name) do
    key = prefix <> String.upcase(Atom.to_string(name))
    Code.ensure_loaded!(enum_mod)

    Enum.find_value(enum_mod.mapping(), fn {atom, _number} ->
      if Atom.to_string(atom) == key, do: atom
    end) || raise ArgumentError, "unknown #{inspect(enum_mod)} #{inspect(name)}"
  end

  def lm(nil), do: nil

  def lm(%DspyBridge.V1.LMConfig{} = lm),
    do: %{
      model: lm.model,
      api_base: lm.api_base,
      api_key_env: lm.api_key_env,
      options: lm.options
    }

  def usage(nil), do: %{lm_calls: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0.0}

  def usage(u),
    do: %{
      lm_calls: u.lm_calls,
      prompt_tokens: u.prompt_tokens,
      completion_tokens: u.completion_tokens,
      cost_usd: u.cost_usd
    }

  def variables_used(map) do
    Map.new(map, fn {name, u} ->
      {name, %{value: Values.from_value(u.value), version: u.version, overridden: u.overridden}}
    end)
  end

  def trace(calls) do
    for c <- calls do
      %{
        model: c.model,
        messages: Enum.map(c.messages, &Values.from_struct/1),
        completions: c.completions,
        options: Values.from_struct(c.options)
      }
    end
  end

  def error(status), do: Error.from_status(status)
end

defmodule DSPyBridge.Session do
  @moduledoc """
  A handle on a sidecar session: its id, the connection it is reached through, and what the
  sidecar said about it when the handle was made. Every session function of `DSPyBridge` takes
  one, so the `session_id` is never threaded by hand.
  """
  alias DSPyBridge.Convert

  defstruct [
    :id,
    :conn,
    metadata: %{},
    ttl_seconds: 0,
    create_time: nil,
    expire_time: nil,
    variable_count: 0,
    module_count: 0,
    lm: nil
  ]

  @type t :: %__MODULE__{
          id: String.t(),
          conn: DSPyBridge.Connection.t(),
          metadata: %{String.t() => String.t()},
          ttl_seconds: integer(),
          create_time: DateTime.t() | nil,
          expire_time: DateTime.t() | nil,
          variable_count: non_neg_integer(),
          module_count: non_neg_integer(),
          lm: map() | nil
        }

  @doc false
  def from_proto(conn, s) do
    %__MODULE__{
      id: s.session_id,
      conn: conn,
      metadata: s.metadata,
      ttl_seconds: s.ttl_seconds,
      create_time: Convert.time(s.create_time),
      expire_time: Convert.time(s.expire_time),
      variable_count: s.variable_count,
      module_count: s.module_count,
      lm: Convert.lm(s.lm)
    }
  end
end

defmodule DSPyBridge.Variable do
  @moduledoc """
  A typed, versioned variable. `type` is one of `:float`, `:integer`, `:string`, `:boolean`,
  `:choice`, `:module`, `:embedding`, `:tensor`, `:json`; `value` is a plain Elixir value (see
  `DSPyBridge.Values`); `constraints` is a map of the constraints that are set.
  """
  alias DSPyBridge.{Convert, Values}

  defstruct [
    :id,
    :session_id,
    :name,
    :type,
    :value,
    :version,
    :create_time,
    :update_time,
    constraints: %{},
    description: "",
    metadata: %{},
    source: ""
  ]

  @type t :: %__MODULE__{}

  @doc false
  def from_proto(nil), do: nil

  def from_proto(v) do
    %__MODULE__{
      id: v.id,
      session_id: v.session_id,
      name: v.name,
      type: Convert.enum(v.type, "VARIABLE_TYPE_"),
      value: Values.from_value(v.value),
      version: v.version,
      create_time: Convert.time(v.create_time),
      update_time: Convert.time(v.update_time),
      constraints: constraints(v.constraints),
      description: v.description,
      metadata: v.metadata,
      source: v.source
    }
  end

  defp constraints(nil), do: %{}

  defp constraints(c) do
    [
      min: c.min,
      max: c.max,
      step: c.step,
      choices: c.choices,
      pattern: c.pattern,
      min_length: c.min_length,
      max_length: c.max_length,
      dims: c.dims,
      dtype: c.dtype
    ]
    |> Enum.reject(fn {_k, v} -> v in [nil, "", []] end)
    |> Map.new()
  end
end

defmodule DSPyBridge.Module do
  @moduledoc """
  A DSPy module held by the sidecar. `signature` is `%{text:, instructions:, fields: [...]}`;
  `config` is a plain map.
  """
  alias DSPyBridge.{Convert, Values}

  defstruct [
    :module_id,
    :session_id,
    :module_type,
    :signature,
    :version,
    :create_time,
    :update_time,
    config: %{},
    variable_bindings: %{},
    lm: nil,
    demo_count: 0
  ]

  @type t :: %__MODULE__{}

  @doc false
  def from_proto(nil), do: nil

  def from_proto(m) do
    %__MODULE__{
      module_id: m.module_id,
      session_id: m.session_id,
      module_type: m.module_type,
      signature: signature(m.signature),
      version: m.version,
      create_time: Convert.time(m.create_time),
      update_time: Convert.time(m.update_time),
      config: Values.from_struct(m.config),
      variable_bindings: m.variable_bindings,
      lm: Convert.lm(m.lm),
      demo_count: m.demo_count
    }
  end

  defp signature(nil), do: nil

  defp signature(s) do
    fields =
      for f <- s.fields do
        %{
          name: f.name,
          role: Convert.enum(f.role, "FIELD_ROLE_"),
          type: f.type,
          description: f.description
        }
      end

    %{text: s.text, instructions: s.instructions, fields: fields}
  end
end

defmodule DSPyBridge.Prediction do
  @moduledoc """
  The result of `DSPyBridge.execute/4`: the `outputs` (every field of the prediction, typed as
  the signature says), the variables the execution used, LM `usage`, the server-side latency,
  the module version that ran and, with `include_trace: true`, the LM calls.
  """
  alias DSPyBridge.{Convert, Values}

  defstruct outputs: %{},
            variables_used: %{},
            usage: %{},
            latency_ms: 0.0,
            module_version: 0,
            trace: []

  @type t :: %__MODULE__{}

  @doc false
  def from_proto(r) do
    %__MODULE__{
      outputs: Values.from_value_map(r.outputs),
      variables_used: Convert.variables_used(r.variables_used),
      usage: Convert.usage(r.usage),
      latency_ms: r.latency_ms,
      module_version: r.module_version,
      trace: Convert.trace(r.trace)
    }
  end
end

defmodule DSPyBridge.Job do
  @moduledoc """
  An optimization job. `status` is one of `:queued`, `:running`, `:succeeded`, `:failed`,
  `:cancelled`, `:interrupted`; `error` is a `%DSPyBridge.Error{}` for a failed job; `result` is
  `{:module_result, map}` or `{:variable_search_result, map}` once the job succeeded.
  """
  alias DSPyBridge.{Convert, Values}

  defstruct [
    :job_id,
    :session_id,
    :module_id,
    :optimizer,
    :status,
    :progress,
    :best_score,
    :error,
    :result,
    :create_time,
    :start_time,
    :end_time,
    applied: false,
    apply_requested: false,
    config: %{},
    trainset_size: 0,
    valset_size: 0
  ]

  @type t :: %__MODULE__{}

  @terminal [:succeeded, :failed, :cancelled, :interrupted]

  @doc "True when the job will not change any more."
  @spec terminal?(t()) :: boolean()
  def terminal?(%__MODULE__{status: status}), do: status in @terminal

  @doc false
  def from_proto(j) do
    %__MODULE__{
      job_id: j.job_id,
      session_id: j.session_id,
      module_id: j.module_id,
      optimizer: j.optimizer,
      status: Convert.enum(j.status, "JOB_STATUS_"),
      progress: progress(j.progress),
      best_score: j.best_score,
      error: Convert.error(j.error),
      result: result(j.result),
      create_time: Convert.time(j.create_time),
      start_time: Convert.time(j.start_time),
      end_time: Convert.time(j.end_time),
      applied: j.applied,
      apply_requested: j.apply_requested,
      config: Values.from_struct(j.config),
      trainset_size: j.trainset_size,
      valset_size: j.valset_size
    }
  end

  @doc false
  def progress(nil), do: nil

  def progress(p),
    do: %{phase: p.phase, completed: p.completed, total: p.total, message: p.message}

  defp result(nil), do: nil

  defp result({:module_result, r}) do
    {:module_result,
     %{
       module_version: r.module_version,
       previous_version: r.previous_version,
       score_before: r.score_before,
       score_after: r.score_after,
       demo_count: r.demo_count,
       instructions: r.instructions,
       state_json: r.state_json
     }}
  end

  defp result({:variable_search_result, r}) do
    {:variable_search_result,
     %{
       trials: Enum.map(r.trials, &trial/1),
       pareto_front: Enum.map(r.pareto_front, &trial/1),
       best: trial(r.best)
     }}
  end

  defp trial(nil), do: nil

  defp trial(t) do
    %{
      number: t.number,
      values: Values.from_value_map(t.values),
      objectives: t.objectives,
      state: Convert.enum(t.state, "TRIAL_STATE_"),
      error_message: t.error_message
    }
  end
end
