defmodule DSPyBridge.Sidecar do
  @moduledoc """
  Runs `dspy-bridge serve` as a port program under your supervision tree, or stands for an
  external sidecar (docker-compose, another host).

      children = [
        {DSPyBridge.Sidecar,
         name: MyApp.Sidecar, port: 50051, workers: 2, store: "memory://",
         connection: MyApp.Bridge}
      ]

  The process starts the sidecar, waits for its `serving` log line and for the gRPC health
  check to answer `SERVING`, and only then finishes starting, so children after it in the
  supervisor find a ready sidecar. With `connection: name` it also starts a
  `DSPyBridge.Connection` registered under `name`, linked to it. If the sidecar exits, this
  process exits too and its supervisor restarts both; when the supervisor stops it, the sidecar
  is sent SIGTERM and drains (in-flight calls finish, watches end with `DRAINING`). If the VM
  itself dies (a crash, `kill -9`), the sidecar sees its stdin close (it is started with
  `--exit-on-stdin-close`) and drains and exits the same way, so it is never left running.

  Options:

    * `:command` - the `dspy-bridge` executable (default: `dspy-bridge` on the `PATH`).
    * `:host` (default `"127.0.0.1"`), `:port` (default `0`: the sidecar picks a free one; read
      it with `address/1`), `:workers`, `:store` (`"memory://"`, `"sqlite:///path"`,
      `"redis://..."`), `:lm` (default model, e.g. `"offline"`), `:args` (more CLI arguments),
      `:env` (extra environment, `{name, value}` strings; a `nil` value unsets the variable).
    * `:external` - `"host:port"` of a sidecar started elsewhere: nothing is started, the
      address is only checked for health.
    * `:connection` - a name for a connection to start, with `:connection_opts`.
    * `:ready_timeout` - ms to wait for the sidecar to serve (default `60_000`).
    * `:tls` - client TLS options (as `DSPyBridge.Connection`'s) for the health check and the
      connection, when the sidecar serves TLS (`--tls-cert-file`/`--tls-key-file` in `:args`).
  """

  use GenServer
  require Logger

  alias DSPyBridge.Connection

  @doc "Starts the sidecar process (see the module doc)."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    case Keyword.fetch(opts, :name) do
      {:ok, name} -> GenServer.start_link(__MODULE__, opts, name: name, timeout: :infinity)
      :error -> GenServer.start_link(__MODULE__, opts, timeout: :infinity)
    end
  end

  @doc false
  def child_spec(opts) do
    %{
      id: Keyword.get(opts, :name, __MODULE__),
      start: {__MODULE__, :start_link, [opts]},
      # Time for the sidecar to drain before it is killed.
      shutdown: 30_000
    }
  end

  @doc "Starts the sidecar process without linking it to the caller (see `start_link/1`)."
  @spec start(keyword()) :: GenServer.on_start()
  def start(opts) do
    case Keyword.fetch(opts, :name) do
      {:ok, name} -> GenServer.start(__MODULE__, opts, name: name, timeout: :infinity)
      :error -> GenServer.start(__MODULE__, opts, timeout: :infinity)
    end
  end

  @doc "The `\"host:port\"` address the sidecar serves on."
  @spec address(GenServer.server()) :: String.t()
  def address(sidecar), do: GenServer.call(sidecar, :address)

  @doc "The OS process id of the sidecar (`nil` for an external one)."
  @spec os_pid(GenServer.server()) :: non_neg_integer() | nil
  def os_pid(sidecar), do: GenServer.call(sidecar, :os_pid)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    ready_timeout = Keyword.get(opts, :ready_timeout, 60_000)

    with {:ok, state} <- start_sidecar(opts, ready_timeout),
         :ok <- check_health(state.address, ready_timeout, opts[:tls]),
         {:ok, state} <- start_connection(state, opts) do
      {:ok, state}
    else
      {:error, reason} = error ->
        Logger.error("dspy_bridge sidecar did not start: #{inspect(reason)}")
        error
    end
  end

  @impl true
  def handle_call(:address, _from, s), do: {:reply, s.address, s}
  def handle_call(:os_pid, _from, s), do: {:reply, s.os_pid, s}

  @impl true
  def handle_info({port, {:data, {_eol, line}}}, %{port: port} = s) do
    Logger.debug(["dspy-bridge: ", line])
    {:noreply, s}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = s) do
    {:stop, {:sidecar_exited, status}, %{s | port: nil, os_pid: nil}}
  end

  def handle_info({:EXIT, pid, reason}, %{connection: pid} = s),
    do: {:stop, {:connection_exited, reason}, s}

  def handle_info(_other, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, s) do
    if is_pid(s[:connection]), do: Process.exit(s.connection, :shutdown)
    stop_os_process(s)
  end

  defp start_sidecar(opts, ready_timeout) do
    case Keyword.fetch(opts, :external) do
      {:ok, address} ->
        {:ok, %{address: address, port: nil, os_pid: nil, connection: nil}}

      :error ->
        spawn_sidecar(opts, ready_timeout)
    end
  end

  defp spawn_sidecar(opts, ready_timeout) do
    command = Keyword.get(opts, :command, "dspy-bridge")
    exe = System.find_executable(command) || command
    host = Keyword.get(opts, :host, "127.0.0.1")

    # `--exit-on-stdin-close`: the port's stdin closes when this VM dies (even from SIGKILL,
    # when `terminate/2` never runs), and the sidecar then drains and exits instead of being
    # left behind, still holding its port.
    args =
      ["serve", "--host", host, "--port", to_string(Keyword.get(opts, :port, 0))] ++
        ["--exit-on-stdin-close"] ++
        flag(opts, :workers, "--workers") ++
        flag(opts, :store, "--store") ++
        flag(opts, :lm, "--lm") ++ Keyword.get(opts, :args, [])

    env =
      for {k, v} <- [{"DSPY_BRIDGE_LOG_FORMAT", "json"} | Keyword.get(opts, :env, [])],
          do: {String.to_charlist(k), if(v, do: String.to_charlist(v), else: false)}

    port =
      Port.open({:spawn_executable, exe}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 65_536},
        args: args,
        env: env
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    state = %{port: port, os_pid: os_pid, address: nil, connection: nil}

    case await_serving(port, deadline(ready_timeout)) do
      {:ok, serving_port} ->
        {:ok, %{state | address: "#{host}:#{serving_port}"}}

      {:error, reason} ->
        stop_os_process(state)
        {:error, reason}
    end
  end

  defp flag(opts, key, name) do
    case Keyword.fetch(opts, key) do
      {:ok, value} -> [name, to_string(value)]
      :error -> []
    end
  end

  # The sidecar logs one JSON line per event; `serving` carries the port it listens on.
  defp await_serving(port, deadline) do
    receive do
      {^port, {:data, {:eol, line}}} ->
        case Regex.run(~r/"event": ?"serving"/, line) && Regex.run(~r/"port": ?(\d+)/, line) do
          [_, number] -> {:ok, String.to_integer(number)}
          _ -> await_serving(port, deadline)
        end

      {^port, {:data, {:noeol, _}}} ->
        await_serving(port, deadline)

      {^port, {:exit_status, status}} ->
        {:error, {:sidecar_exited, status}}
    after
      remaining(deadline) -> {:error, :sidecar_not_serving}
    end
  end

  defp check_health(address, ready_timeout, tls) do
    {:ok, conn} = Connection.start_link(address: address, timeout: 5_000, tls: tls)

    try do
      with :ok <- Connection.wait_until_ready(conn, ready_timeout),
           {:ok, :serving} <- DSPyBridge.health(conn) do
        :ok
      else
        {:ok, status} -> {:error, {:not_serving, status}}
        {:error, _} = error -> error
      end
    after
      Connection.close(conn)
    end
  end

  defp start_connection(state, opts) do
    case Keyword.fetch(opts, :connection) do
      {:ok, name} ->
        conn_opts =
          Keyword.merge(Keyword.get(opts, :connection_opts, []),
            name: name,
            address: state.address,
            tls: opts[:tls]
          )

        {:ok, pid} = Connection.start_link(conn_opts)
        :ok = Connection.wait_until_ready(pid, 10_000)
        {:ok, %{state | connection: pid}}

      :error ->
        {:ok, state}
    end
  end

  defp stop_os_process(%{port: port, os_pid: os_pid}) when is_port(port) and is_integer(os_pid) do
    # SIGTERM lets the sidecar drain; the port's exit status tells when it is gone.
    System.cmd("kill", ["-TERM", Integer.to_string(os_pid)], stderr_to_stdout: true)

    receive do
      {^port, {:exit_status, _}} -> :ok
    after
      25_000 ->
        System.cmd("kill", ["-KILL", Integer.to_string(os_pid)], stderr_to_stdout: true)
        :ok
    end
  end

  defp stop_os_process(_state), do: :ok

  defp deadline(ms), do: System.monotonic_time(:millisecond) + ms
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)
end
