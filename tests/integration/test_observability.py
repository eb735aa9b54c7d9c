"""The Prometheus endpoint serves RPC latency histograms; health reports SERVING."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, value_pb2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


METRICS_PORT = _free_port()


@pytest.mark.parametrize("settings_overrides", [{"metrics_port": METRICS_PORT}])
async def test_metrics_endpoint_reports_rpc_latency(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub
) -> None:
    await stub.Ping(pb.PingRequest(message="m"))
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer"),
        )
    )
    await stub.Execute(
        pb.ExecuteRequest(
            session_id=sid, module_id="qa", inputs={"question": value_pb2.Value(string_value="hi")}
        )
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetSession(pb.GetSessionRequest(session_id="missing"))
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    assert 'dspy_bridge_rpc_latency_seconds_count{code="OK",rpc="Ping"}' in body
    assert 'dspy_bridge_rpc_latency_seconds_count{code="NOT_FOUND",rpc="GetSession"}' in body
    assert 'dspy_bridge_lm_calls_total{model="offline"}' in body
    assert 'dspy_bridge_lm_tokens_total{kind="prompt",model="offline"}' in body


async def test_health_reports_serving_for_the_service(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "dspy_bridge.v1.BridgeService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
