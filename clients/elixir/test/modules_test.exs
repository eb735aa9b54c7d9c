defmodule DSPyBridge.ModulesTest do
  use DSPyBridge.Case, async: true

  alias DSPyBridge.{Error, Prediction}

  @train [
    {%{text: "the striker scored a goal in the football match"}, %{topic: "sports"}},
    {%{text: "heavy rain and thunder storm expected tomorrow"}, %{topic: "weather"}},
    {%{text: "bake the bread dough in a hot oven"}, %{topic: "cooking"}},
    {%{text: "the stock market fell as interest rates rose"}, %{topic: "finance"}}
  ]
  @held_out [
    {%{text: "the goalkeeper saved a penalty in the football match"}, %{topic: "sports"}},
    {%{text: "snow and thunder storm expected tomorrow"}, %{topic: "weather"}}
  ]

  test "modules: create, get, list, export/import state, revert, delete", %{session: s} do
    assert {:ok, %DSPyBridge.Module{module_id: "qa", version: 1, signature: sig}} =
             DSPyBridge.create_module(s, "Predict", "question -> answer", id: "qa")

    assert [%{name: "question", role: :input}, %{name: "answer", role: :output}] = sig.fields
    assert {:ok, %DSPyBridge.Module{module_id: "qa"}} = DSPyBridge.get_module(s, "qa")
    assert {:ok, [%DSPyBridge.Module{module_id: "qa"}]} = DSPyBridge.list_modules(s)
    assert {:ok, state} = DSPyBridge.export_state(s, "qa")
    assert is_binary(state)
    assert {:ok, %DSPyBridge.Module{version: 2}} = DSPyBridge.import_state(s, "qa", state)

    assert {:error, %Error{code: :aborted}} =
             DSPyBridge.import_state(s, "qa", state, expected_version: 1)

    assert {:ok, %DSPyBridge.Module{version: 3}} = DSPyBridge.revert_module(s, "qa", 1)
    assert {:ok, %DSPyBridge.Module{version: 1}} = DSPyBridge.get_module(s, "qa", version: 1)
    assert :ok = DSPyBridge.delete_module(s, "qa")
    assert {:error, %Error{code: :not_found}} = DSPyBridge.get_module(s, "qa")

    assert {:error, %Error{code: :invalid_argument}} =
             DSPyBridge.create_module(s, "NoSuchModule", "a -> b")
  end

  test "execute: typed outputs, bound variables, overrides, trace", %{session: s} do
    {:ok, _} = DSPyBridge.register_variable(s, "temp", :float, 0.3, min: 0, max: 1)

    {:ok, _} =
      DSPyBridge.create_module(s, "Predict", "question -> answer, count: int, score: float",
        id: "qa",
        bindings: %{temperature: "temp"}
      )

    assert {:ok, %Prediction{outputs: outputs, variables_used: used} = p} =
             DSPyBridge.execute(s, "qa", %{question: "how many?"}, include_trace: true)

    assert is_binary(outputs["answer"])
    assert is_integer(outputs["count"])
    assert is_float(outputs["score"])
    assert %{"temp" => %{value: 0.3, version: 1, overridden: false}} = used
    assert p.module_version == 1 and p.usage.lm_calls >= 1
    assert [%{model: _, messages: [_ | _]} | _] = p.trace

    assert {:ok, %Prediction{variables_used: %{"temp" => %{value: 0.9, overridden: true}}}} =
             DSPyBridge.execute(s, "qa", [question: "again"], overrides: %{temp: 0.9})

    assert {:error, %Error{code: :invalid_argument}} =
             DSPyBridge.execute(s, "qa", %{question: "x"}, overrides: %{temp: 5.0})

    assert {:error, %Error{code: :not_found}} = DSPyBridge.execute(s, "nope", %{question: "x"})
  end

  test "execute_batch: one item's failure does not fail the batch", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "question -> answer", id: "qa")

    assert {:ok, %{results: [ok1, failed, ok2], module_version: 1}} =
             DSPyBridge.execute_batch(s, "qa", [
               %{question: "one"},
               %{wrong_field: "two"},
               %{question: "three"}
             ])

    assert {:ok, %{outputs: %{"answer" => _}}} = ok1
    assert {:ok, %{outputs: %{"answer" => _}}} = ok2
    assert {:error, %Error{code: :invalid_argument}} = failed
  end

  test "execute_stream as a Stream and as messages", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "question -> answer", id: "qa")

    assert {:ok, stream} = DSPyBridge.execute_stream(s, "qa", %{question: "stream me"})
    events = Enum.to_list(stream)
    assert {:result, %Prediction{outputs: %{"answer" => answer}}} = List.last(events)
    chunks = for {:chunk, %{field: "answer", text: t}} <- events, do: t
    assert Enum.join(chunks) == answer
    assert mailbox() == []

    assert {:ok, ref} = DSPyBridge.execute_stream(s, "qa", %{question: "msgs"}, to: self())
    assert_receive {:dspy_bridge, :execute_stream, ^ref, {:result, %Prediction{}}}, 30_000

    # Errors after the stream opened are raised from the Stream, sent as messages otherwise.
    assert {:ok, bad} = DSPyBridge.execute_stream(s, "nope", %{question: "x"})
    assert %Error{code: :not_found} = catch_error(Enum.to_list(bad))

    assert {:ok, ref} = DSPyBridge.execute_stream(s, "nope", %{question: "x"}, to: self())

    assert_receive {:dspy_bridge, :execute_stream, ^ref, {:error, %Error{code: :not_found}}},
                   30_000
  end

  test "a stream halted early is cancelled and leaves no messages", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "question -> answer", id: "qa")
    {:ok, stream} = DSPyBridge.execute_stream(s, "qa", %{question: "a b c d e f g"})
    assert [_first] = Enum.take(stream, 1)
    assert mailbox() == []
  end

  test "evaluate, with and without progress", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "text -> topic", id: "clf")

    assert {:ok, %{score: score, results: [r0, r1]}} =
             DSPyBridge.evaluate(s, "clf", @held_out, "exact_match")

    assert is_float(score) and r0.index == 0 and r1.index == 1 and r0.error == nil

    parent = self()
    progress = fn done, total -> send(parent, {:progress, done, total}) end

    assert {:ok, %{results: [_, _]}} =
             DSPyBridge.evaluate(s, "clf", @held_out, "exact_match", progress: progress)

    assert_received {:progress, 2, 2}

    assert {:error, %Error{code: :invalid_argument}} =
             DSPyBridge.evaluate(s, "clf", @held_out, "no_such_metric")
  end

  test "optimization: start, watch to the end, apply, list, cancel", %{session: s} do
    {:ok, _} = DSPyBridge.create_module(s, "Predict", "text -> topic", id: "clf")

    assert {:ok, %DSPyBridge.Job{status: status, job_id: job_id}} =
             DSPyBridge.start_optimization(s, "clf", "LabeledFewShot",
               trainset: @train,
               valset: @held_out,
               metric: "exact_match",
               config: %{k: 4}
             )

    assert status in [:queued, :running]

    assert {:ok, ref} = DSPyBridge.watch_optimization(s, job_id, to: self())

    assert {:ok, %DSPyBridge.Job{status: :succeeded} = done} =
             DSPyBridge.await_optimization(s, job_id)

    assert {:module_result, %{score_after: after_score}} = done.result
    assert is_float(after_score)
    assert_receive {:dspy_bridge, :job, ^ref, %DSPyBridge.Job{status: :succeeded}}, 60_000

    assert {:ok, %{job: %DSPyBridge.Job{applied: true}, module: %DSPyBridge.Module{version: 2}}} =
             DSPyBridge.apply_optimization(s, job_id)

    assert {:ok, [%DSPyBridge.Job{job_id: ^job_id}]} =
             DSPyBridge.list_optimizations(s, module_id: "clf")

    assert {:ok, %DSPyBridge.Job{status: :succeeded}} = DSPyBridge.get_optimization(s, job_id)

    assert {:error, %Error{code: :invalid_argument, reason: "UNKNOWN_OPTIMIZER"}} =
             DSPyBridge.start_optimization(s, "clf", "Nope",
               trainset: @train,
               metric: "exact_match"
             )

    {:ok, _} = DSPyBridge.configure_lm(s, "offline", options: %{latency_ms: 300})

    {:ok, slow} =
      DSPyBridge.start_optimization(s, "clf", "BootstrapFewShot",
        trainset: @train,
        metric: "exact_match"
      )

    assert {:ok, %DSPyBridge.Job{status: :cancelled}} =
             DSPyBridge.cancel_optimization(s, slow.job_id)
  end
end
