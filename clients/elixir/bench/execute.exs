# Benchmark driver for `python -m bench elixir` (bench/elixir.py in the repository root).
#
#   mix run bench/execute.exs HOST:PORT SESSION_ID MODULE_ID
#
# Reads commands on stdin, one a line, and answers each with one line on stdout:
#   "serial N"        → the latencies (ms) of N Execute calls made one after another
#   "concurrent P N"  → P processes each making N calls: "ok=.. errors=.. seconds=.. p50=.. p99=.."
#   "quit"            → exits
[address, session_id, module_id] = System.argv()
{:ok, conn} = DSPyBridge.connect(address)
:ok = DSPyBridge.wait_until_ready(conn, 30_000)
session = DSPyBridge.session(conn, session_id)
inputs = %{"question" => "What does a sidecar process do next to an application?"}

call = fn ->
  t0 = System.monotonic_time(:microsecond)
  result = DSPyBridge.execute(session, module_id, inputs)
  {result, (System.monotonic_time(:microsecond) - t0) / 1000}
end

percentile = fn sorted, q -> Enum.at(sorted, min(length(sorted) - 1, trunc(q / 100 * length(sorted)))) end

IO.puts("ready")

Stream.repeatedly(fn -> IO.gets("") end)
|> Enum.reduce_while(:ok, fn
  :eof, _ ->
    {:halt, :ok}

  line, _ ->
    case String.split(String.trim(line)) do
      ["serial", n] ->
        latencies =
          for _ <- 1..String.to_integer(n) do
            {{:ok, _}, ms} = call.()
            ms
          end

        IO.puts(Enum.map_join(latencies, " ", &Float.to_string/1))
        {:cont, :ok}

      ["concurrent", p, n] ->
        t0 = System.monotonic_time(:microsecond)

        results =
          1..String.to_integer(p)
          |> Task.async_stream(
            fn _ -> for _ <- 1..String.to_integer(n), do: call.() end,
            max_concurrency: String.to_integer(p),
            timeout: :infinity
          )
          |> Enum.flat_map(fn {:ok, calls} -> calls end)

        seconds = (System.monotonic_time(:microsecond) - t0) / 1_000_000
        errors = for {{:error, e}, _} <- results, do: e
        sorted = results |> Enum.map(&elem(&1, 1)) |> Enum.sort()

        IO.puts(
          "ok=#{length(results) - length(errors)} errors=#{length(errors)} seconds=#{seconds} " <>
            "p50=#{percentile.(sorted, 50)} p99=#{percentile.(sorted, 99)} " <>
            "first_error=#{errors |> List.first() |> inspect() |> String.replace(" ", "_")}"
        )

        {:cont, :ok}

      ["quit"] ->
        {:halt, :ok}
    end
end)
