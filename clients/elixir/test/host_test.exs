defmodule DSPyBridge.HostTest do
  use DSPyBridge.Case, async: true

  alias DSPyBridge.{Error, Host}

  @order_tool %{
    name: "lookup_order",
    description: "Finds an order by its id",
    parameters: %{
      type: "object",
      properties: %{order_id: %{type: "string", description: "the order's id"}},
      required: ["order_id"]
    }
  }

  defmodule Handler do
    @moduledoc false
    @behaviour DSPyBridge.Host

    @impl true
    def handle_tool("lookup_order", %{"order_id" => "99"}, _call),
      do: {:error, "order 99 does not exist"}

    def handle_tool("lookup_order", %{"order_id" => id}, _call),
      do: {:ok, "order #{id} shipped on Monday"}

    @impl true
    def handle_metric("same_topic", %{prediction: p, labels: l}),
      do: {:ok, if(p["topic"] == l["topic"], do: 1.0, else: 0.0), "compared topics"}
  end

  test "a ReAct agent calls an Elixir tool (handler module)", %{session: s} do
    {:ok, host} = Host.start_link(session: s, tools: [@order_tool], handler: Handler)
    assert %{tools: ["lookup_order"]} = Host.welcome(host)

    {:ok, _} =
      DSPyBridge.create_module(s, "ReAct", "order_id -> answer",
        id: "agent",
        config: %{tools: ["host:lookup_order"], max_iters: 3}
      )

    assert {:ok, %{outputs: %{"trajectory" => trajectory, "answer" => answer}}} =
             DSPyBridge.execute(s, "agent", %{order_id: "42"})

    assert trajectory["tool_name_0"] == "host:lookup_order"
    assert trajectory["observation_0"] == "order 42 shipped on Monday"
    assert answer == "order 42 shipped on Monday"

    assert {:ok, %{outputs: %{"trajectory" => %{"observation_0" => observation}}}} =
             DSPyBridge.execute(s, "agent", %{order_id: "99"})

    assert observation =~ "order 99 does not exist"
    Host.stop(host)
  end

  test "a tool function of arity 2 is told the module and the job that called it", %{session: s} do
    test = self()

    tool =
      Map.put(@order_tool, :fun, fn %{"order_id" => id}, call ->
        send(test, {:called, call.module_id, call.job_id})
        {:ok, "order #{id} shipped"}
      end)

    {:ok, host} = Host.start_link(session: s, tools: [tool])

    {:ok, _} =
      DSPyBridge.create_module(s, "ReAct", "order_id -> answer",
        id: "agent",
        config: %{tools: ["host:lookup_order"], max_iters: 3}
      )

    assert {:ok, _} = DSPyBridge.execute(s, "agent", %{order_id: "7"})
    assert_receive {:called, "agent", ""}

    trainset = for n <- ["11", "12"], do: {%{order_id: n}, %{answer: "order #{n} shipped"}}

    {:ok, %DSPyBridge.Job{job_id: job_id}} =
      DSPyBridge.start_optimization(s, "agent", "LabeledFewShot",
        trainset: trainset,
        metric: "contains"
      )

    assert {:ok, %DSPyBridge.Job{status: :succeeded}} =
             DSPyBridge.await_optimization(s, job_id, timeout: 120_000)

    assert_received {:called, "agent", ^job_id}
    Host.stop(host)
  end

  test "an Elixir metric scores an evaluation; an Elixir LM answers a module", %{session: s} do
    lm = fn %{messages: messages} ->
      last = List.last(messages)["content"]
      topic = if last =~ "football", do: "sports", else: "weather"
      {:ok, "[[ ## topic ## ]]\n#{topic}\n\n[[ ## completed ## ]]", %{prompt_tokens: 7}}
    end

    {:ok, host} =
      Host.start_link(
        session: s,
        metrics: [%{name: "same_topic", description: "1 when the topic matches"}],
        lms: [%{name: "rules", fun: lm}],
        handler: Handler
      )

    {:ok, _} = DSPyBridge.configure_lm(s, "host:rules")
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "text -> topic", id: "clf")

    assert {:ok, %{outputs: %{"topic" => "sports"}, usage: %{prompt_tokens: 7}}} =
             DSPyBridge.execute(s, "clf", %{text: "a football match"})

    dataset = [
      {%{text: "a football match"}, %{topic: "sports"}},
      {%{text: "rain tomorrow"}, %{topic: "weather"}},
      {%{text: "rain again"}, %{topic: "sports"}}
    ]

    assert {:ok, %{score: score, results: results}} =
             DSPyBridge.evaluate(s, "clf", dataset, "host:same_topic")

    assert Enum.map(results, & &1.score) == [1.0, 1.0, 0.0]
    assert_in_delta score, 2 / 3, 1.0e-9
    Host.stop(host)
  end

  test "names nobody offers are refused up front; a bad offer is an error", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "text -> topic", id: "clf")

    assert {:error, %Error{code: :failed_precondition, reason: "HOST_METRIC_UNAVAILABLE"}} =
             DSPyBridge.evaluate(s, "clf", [{%{text: "x"}, %{topic: "y"}}], "host:nobody")

    bad = %{@order_tool | name: "not a name"}

    assert {:error, %Error{code: :invalid_argument, violations: [%{field: field}]}} =
             Host.start_link(session: s, tools: [bad], handler: Handler)

    assert field == "hello.tools[0].name"
  end

  test "the host stops when its session is deleted", %{session: s} do
    {:ok, host} = Host.start_link(session: s, metrics: ["same_topic"], handler: Handler)
    ref = Process.monitor(host)
    :ok = DSPyBridge.delete_session(s)
    assert_receive {:DOWN, ^ref, :process, ^host, :normal}, 30_000
  end
end
