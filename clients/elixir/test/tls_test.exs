defmodule DSPyBridge.TLSTest do
  # A sidecar serving TLS with a certificate from a throwaway CA made here with openssl.
  use ExUnit.Case, async: true

  import DSPyBridge.Case, only: [free_port: 0]

  alias DSPyBridge.{Error, Sidecar}

  @moduletag :tmp_dir
  @moduletag timeout: 180_000

  test "TLS: verified against the CA; an unknown CA is refused", %{tmp_dir: dir} do
    ca = make_certificates(dir)
    port = free_port()

    {:ok, sidecar} =
      Sidecar.start(
        command: Application.fetch_env!(:dspy_bridge, :test_sidecar_command),
        # The name in the certificate: TLS verifies the host name it connects to.
        host: "localhost",
        port: port,
        workers: 0,
        lm: "offline",
        tls: [cacertfile: ca],
        args: [
          "--tls-cert-file",
          Path.join(dir, "server.pem"),
          "--tls-key-file",
          Path.join(dir, "server.key")
        ]
      )

    {:ok, conn} = DSPyBridge.connect("localhost:#{port}", tls: [cacertfile: ca])
    assert :ok = DSPyBridge.wait_until_ready(conn, 30_000)
    assert {:ok, %{message: "over tls"}} = DSPyBridge.ping(conn, "over tls")

    # Plaintext to a TLS port gets no answer; TLS that trusts another CA never comes up.
    {:ok, plain} = DSPyBridge.connect("localhost:#{port}")
    assert {:error, %Error{code: :unavailable}} = DSPyBridge.ping(plain, "", timeout: 1_000)
    other_ca = make_certificates(Path.join(dir, "other") |> tap(&File.mkdir_p!/1))
    {:ok, untrusted} = DSPyBridge.connect("localhost:#{port}", tls: [cacertfile: other_ca])
    assert {:error, %Error{code: :unavailable}} = DSPyBridge.wait_until_ready(untrusted, 1_000)

    Enum.each([conn, plain, untrusted], &DSPyBridge.disconnect/1)
    GenServer.stop(sidecar)
  end

  # A CA and a server certificate for localhost signed by it; returns the CA's path.
  defp make_certificates(dir) do
    run = fn args -> {_, 0} = System.cmd("openssl", args, stderr_to_stdout: true, cd: dir) end

    run.(
      ~w(req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca)
    )

    run.(~w(req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost))
    File.write!(Path.join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    run.(
      ~w(x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf)
    )

    Path.join(dir, "ca.pem")
  end
end
