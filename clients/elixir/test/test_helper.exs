# Sidecar log lines are logged at :debug; keep the test output to the results.
Logger.configure(level: :info)

# The suite runs against a real sidecar: `dspy-bridge serve` from the repository's virtualenv
# (or DSPY_BRIDGE_COMMAND), started here as a port program on a free loopback port.
command =
  System.get_env("DSPY_BRIDGE_COMMAND") ||
    Path.expand("../../../.venv/bin/dspy-bridge", __DIR__)

{:ok, sidecar} =
  DSPyBridge.Sidecar.start_link(
    command: command,
    workers: 0,
    store: "memory://",
    lm: "offline",
    args: ["--grace-seconds", "2"],
    env: [{"OPENAI_API_KEY", nil}]
  )

Process.unlink(sidecar)
Application.put_env(:dspy_bridge, :test_sidecar_command, command)
Application.put_env(:dspy_bridge, :test_address, DSPyBridge.Sidecar.address(sidecar))
ExUnit.after_suite(fn _ -> GenServer.stop(sidecar) end)
ExUnit.start(timeout: 120_000)
