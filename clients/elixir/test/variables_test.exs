defmodule DSPyBridge.VariablesTest do
  use DSPyBridge.Case, async: true

  alias DSPyBridge.{Error, Tensor, Variable}

  test "every variable type round-trips its value", %{session: s} do
    tensor = Tensor.from_list([[1.0, 2.0], [3.0, 4.0]], "float32")

    cases = [
      {"f", :float, 0.5, [min: 0, max: 1]},
      {"i", :integer, 7, [min: 0, max: 10]},
      {"s", :string, "hello", [max_length: 10]},
      {"b", :boolean, true, []},
      {"c", :choice, "b", [choices: ["a", "b"]]},
      {"m", :module, "Predict", []},
      {"e", :embedding, [0.25, 0.5], [dims: [2]]},
      {"t", :tensor, tensor, [dtype: "float32", dims: [2, 2]]},
      {"j", :json, %{"k" => [1, 2], "n" => nil}, []}
    ]

    for {name, type, value, opts} <- cases do
      assert {:ok, %Variable{type: ^type, version: 1} = v} =
               DSPyBridge.register_variable(s, name, type, value, opts)

      assert v.value == value, "#{name}: #{inspect(v.value)}"
      assert {:ok, %Variable{value: ^value}} = DSPyBridge.get_variable(s, name)
    end

    assert {:ok, listed} = DSPyBridge.list_variables(s)
    assert Enum.map(listed, & &1.name) == ~w(b c e f i j m s t)
    assert {:ok, [%Variable{name: "f"}]} = DSPyBridge.list_variables(s, "f*")
  end

  test "an Nx tensor is a tensor variable's value", %{session: s} do
    nx = Nx.tensor([[0.5, 1.0, 1.5]], type: {:f, 64})

    assert {:ok, %Variable{value: %Tensor{dtype: "float64", shape: [1, 3]} = value}} =
             DSPyBridge.register_variable(s, "weights", :tensor, nx, dtype: "float64")

    assert Nx.to_list(Tensor.to_nx(value)) == [[0.5, 1.0, 1.5]]
  end

  test "a bad value is INVALID_ARGUMENT with field violations and changes nothing",
       %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "temp", :float, 0.5, min: 0, max: 1)

    assert {:error, %Error{code: :invalid_argument, violations: [_ | _]} = error} =
             DSPyBridge.update_variable(s, "temp", 3.0)

    assert error.domain == "dspy-bridge"
    assert Enum.all?(error.violations, &(is_binary(&1.field) and is_binary(&1.description)))
    assert {:ok, %Variable{version: 1, value: 0.5}} = DSPyBridge.get_variable(s, "temp")
  end

  test "expected_version conflicts report the current version", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "n", :integer, 1)

    assert {:ok, %Variable{version: 2}} =
             DSPyBridge.update_variable(s, "n", 2, expected_version: 1)

    assert {:error, %Error{code: :aborted, reason: "VERSION_CONFLICT", metadata: meta}} =
             DSPyBridge.update_variable(s, "n", 3, expected_version: 1)

    assert meta["current_version"] == "2"
    assert {:ok, %Variable{value: 2}} = DSPyBridge.get_variable(s, "n")
  end

  test "errors on every unary path carry the reason", %{conn: conn, session: s} do
    assert {:error, %Error{code: :not_found, reason: "VARIABLE_NOT_FOUND"}} =
             DSPyBridge.get_variable(s, "ghost")

    {:ok, _} = DSPyBridge.register_variable(s, "dup", :integer, 1)

    assert {:error, %Error{code: :already_exists}} =
             DSPyBridge.register_variable(s, "dup", :integer, 1)

    gone = DSPyBridge.session(conn, "ses_does_not_exist")
    assert {:error, %Error{code: :not_found, reason: reason}} = DSPyBridge.get_session(gone)
    assert reason =~ "SESSION"
  end

  test "batch updates: atomic all-or-nothing, non-atomic per write", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "a", :integer, 1, min: 0, max: 10)
    {:ok, _} = DSPyBridge.register_variable(s, "b", :integer, 1, min: 0, max: 10)

    assert {:error, %Error{code: :invalid_argument}} =
             DSPyBridge.batch_update(s, [{"a", 2}, {"b", 99}], atomic: true)

    assert {:ok, %Variable{version: 1}} = DSPyBridge.get_variable(s, "a")

    assert {:ok, [%Variable{name: "a", value: 3}, %Variable{name: "b", value: 4}]} =
             DSPyBridge.batch_update(s, [{"a", 3}, {"b", 4}], atomic: true)

    assert {:ok, [{:ok, %Variable{value: 5}}, {:error, %Error{reason: "VERSION_CONFLICT"}}]} =
             DSPyBridge.batch_update(s, [{"a", 5}, {"b", 6, 1}])
  end

  test "history, rollback and delete", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "h", :string, "one")
    {:ok, _} = DSPyBridge.update_variable(s, "h", "two", reason: "try two", source: "test")

    assert {:ok, [%{version: 2, value: "two", reason: "try two", source: "test"}, %{version: 1}]} =
             DSPyBridge.history(s, "h")

    assert {:ok, [%{version: 2}]} = DSPyBridge.history(s, "h", limit: 1)
    assert {:ok, %Variable{version: 3, value: "one"}} = DSPyBridge.rollback(s, "h", 1)
    assert :ok = DSPyBridge.delete_variable(s, "h")
    assert {:error, %Error{code: :not_found}} = DSPyBridge.get_variable(s, "h")
  end

  test "sessions: create with options, get, list, heartbeat, configure LM, delete",
       %{conn: conn} do
    id = "ses_elixir_#{System.unique_integer([:positive])}"

    assert {:ok, %DSPyBridge.Session{id: ^id, ttl_seconds: 600, metadata: %{"app" => "test"}}} =
             DSPyBridge.create_session(conn, id: id, ttl_seconds: 600, metadata: %{app: "test"})

    s = DSPyBridge.session(conn, id)
    assert {:ok, %DSPyBridge.Session{id: ^id}} = DSPyBridge.get_session(s)
    assert {:ok, sessions} = DSPyBridge.list_sessions(conn, page_size: 1)
    assert id in Enum.map(sessions, & &1.id)
    assert {:ok, %DSPyBridge.Session{expire_time: %DateTime{}}} = DSPyBridge.heartbeat(s)

    assert {:ok, %DSPyBridge.Session{lm: %{model: "offline"}}} =
             DSPyBridge.configure_lm(s, "offline", options: %{temperature: 0.2})

    assert {:error, %Error{code: :already_exists}} = DSPyBridge.create_session(conn, id: id)
    assert :ok = DSPyBridge.delete_session(s)
    assert {:error, %Error{code: :not_found}} = DSPyBridge.get_session(s)
  end

  test "server info, ping and health", %{conn: conn} do
    assert {:ok, %{message: "hi", version: v}} = DSPyBridge.ping(conn, "hi")
    assert is_binary(v)
    assert {:ok, :serving} = DSPyBridge.health(conn)
    assert {:ok, info} = DSPyBridge.server_info(conn)
    assert "Predict" in info.module_types
    assert :tensor in info.variable_types
    assert info.store_backend == "memory"
    # Every limit the sidecar enforces (its defaults here), the LM allow-lists only as counts.
    assert %{max_sessions: 10_000, requests: %{max_dataset_examples: 10_000}} = info.limits
    assert %{max_running_jobs: 2, max_job_duration_ms: 3_600_000} = info.limits.jobs
    assert info.limits.host_calls.default_tool_timeout_ms == 30_000
    assert info.limits.lm_allow_lists == %{api_base_count: 0, key_env_pattern_count: 1}
  end
end
