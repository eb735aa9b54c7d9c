defmodule DSPyBridge.Error do
  @moduledoc """
  An error returned by the sidecar (or made by this client), decoded from the gRPC status and its
  `grpc-status-details-bin` trailer.

    * `code` - the gRPC status as an atom: `:invalid_argument`, `:not_found`, `:aborted`,
      `:unavailable`, `:deadline_exceeded`, ...
    * `reason` - the stable `ErrorInfo.reason` of the sidecar (`"VERSION_CONFLICT"`,
      `"SESSION_NOT_FOUND"`, `"DRAINING"`, ...); `""` when the status carried none.
    * `message` - the human-readable status message.
    * `metadata` - `ErrorInfo.metadata` (for `VERSION_CONFLICT`, `"current_version"` and
      `"expected_version"`).
    * `violations` - `BadRequest` field violations as `%{field: ..., description: ...}` maps.
    * `retry_after_ms` - `RetryInfo.retry_delay` in milliseconds, or `nil`.

  It is an exception too: `raise error` works where a bang style is wanted.
  """

  defexception code: :unknown,
               reason: "",
               message: "",
               domain: "",
               metadata: %{},
               violations: [],
               retry_after_ms: nil

  @type code ::
          :ok
          | :cancelled
          | :unknown
          | :invalid_argument
          | :deadline_exceeded
          | :not_found
          | :already_exists
          | :permission_denied
          | :resource_exhausted
          | :failed_precondition
          | :aborted
          | :out_of_range
          | :unimplemented
          | :internal
          | :unavailable
          | :data_loss
          | :unauthenticated

  @type t :: %__MODULE__{
          code: code(),
          reason: String.t(),
          message: String.t(),
          domain: String.t(),
          metadata: %{optional(String.t()) => String.t()},
          violations: [%{field: String.t(), description: String.t()}],
          retry_after_ms: non_neg_integer() | nil
        }

  @codes ~w(ok cancelled unknown invalid_argument deadline_exceeded not_found already_exists
            permission_denied resource_exhausted failed_precondition aborted out_of_range
            unimplemented internal unavailable data_loss unauthenticated)a

  @doc "The atom for a numeric gRPC status code (`:unknown` for codes outside 0..16)."
  @spec code_name(integer()) :: code()
  def code_name(number) when is_integer(number) and number >= 0 and number <= 16,
    do: Enum.at(@codes, number)

  def code_name(_number), do: :unknown

  @impl true
  def message(%__MODULE__{code: code, reason: reason, message: message}) do
    tag = if reason == "", do: "#{code}", else: "#{code} #{reason}"
    "#{tag}: #{message}"
  end

  @doc "An error made on this side (no status details), e.g. `:unavailable` while disconnected."
  @spec client(code(), String.t()) :: t()
  def client(code, message), do: %__MODULE__{code: code, message: message}

  @doc """
  The error for a `google.rpc.Status` message: the status of a failed RPC, or the `error` of a
  batch item, an evaluation result or a job. Returns `nil` for an OK (code 0) or unset status.
  """
  @spec from_status(Google.Rpc.Status.t() | nil) :: t() | nil
  def from_status(nil), do: nil
  def from_status(%Google.Rpc.Status{code: 0}), do: nil

  def from_status(%Google.Rpc.Status{code: code, message: message, details: details}) do
    Enum.reduce(details, %__MODULE__{code: code_name(code), message: message}, &add_detail/2)
  end

  @doc """
  The error for a gRPC status read from response headers or trailers (a list of
  `{name, value}`): `grpc-status`, `grpc-message` and, when present, the richer
  `grpc-status-details-bin`. Returns `nil` for status 0.
  """
  @spec from_headers([{String.t(), String.t()}]) :: t() | nil
  def from_headers(headers) do
    code = headers |> header("grpc-status", "2") |> parse_code()
    message = headers |> header("grpc-message", "") |> URI.decode()

    cond do
      code == 0 ->
        nil

      details = decode_details(header(headers, "grpc-status-details-bin", nil)) ->
        # The details carry the same code and message plus ErrorInfo/BadRequest/RetryInfo.
        from_status(%{details | code: code}) || client(code_name(code), message)

      true ->
        client(code_name(code), message)
    end
  end

  defp header(headers, name, default) do
    case List.keyfind(headers, name, 0) do
      {_, value} -> value
      nil -> default
    end
  end

  defp parse_code(text) do
    case Integer.parse(text) do
      {code, ""} -> code
      _ -> 2
    end
  end

  defp decode_details(nil), do: nil

  defp decode_details(encoded) do
    # gRPC sends it base64 without padding; some servers pad it.
    with {:ok, bytes} <- Base.decode64(String.trim_trailing(encoded, "="), padding: false) do
      Google.Rpc.Status.decode(bytes)
    else
      _ -> nil
    end
  rescue
    _ in [Protobuf.DecodeError] -> nil
  end

  defp add_detail(%Google.Protobuf.Any{type_url: url, value: value}, error) do
    case url |> String.split("/") |> List.last() do
      "google.rpc.ErrorInfo" ->
        info = Google.Rpc.ErrorInfo.decode(value)
        %{error | reason: info.reason, domain: info.domain, metadata: info.metadata}

      "google.rpc.BadRequest" ->
        bad = Google.Rpc.BadRequest.decode(value)

        violations =
          for v <- bad.field_violations, do: %{field: v.field, description: v.description}

        %{error | violations: error.violations ++ violations}

      "google.rpc.RetryInfo" ->
        %Google.Rpc.RetryInfo{retry_delay: delay} = Google.Rpc.RetryInfo.decode(value)
        %{error | retry_after_ms: duration_ms(delay)}

      _other ->
        error
    end
  end

  defp duration_ms(nil), do: nil
  defp duration_ms(%{seconds: s, nanos: n}), do: s * 1000 + div(n, 1_000_000)
end
