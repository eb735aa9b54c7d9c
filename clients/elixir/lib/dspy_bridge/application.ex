defmodule DSPyBridge.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    children = [
      {DynamicSupervisor, name: DSPyBridge.ConnectionSupervisor, strategy: :one_for_one},
      {DynamicSupervisor, name: DSPyBridge.WatchSupervisor, strategy: :one_for_one},
      {Task.Supervisor, name: DSPyBridge.TaskSupervisor}
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: DSPyBridge.Supervisor)
  end
end
