"""Metric intake: the protocols outside applications already speak, decoded into
`metric.v2` samples (shared/samples.py), and the per-tenant limits they pass through.

Pure code, no I/O: the HTTP routes (`POST /v1/metrics`, `POST /api/v1/write`) read and
un-gzip the body, verify the token, then call

- `otlp.decode_otlp_metrics(body, content_type)` or `remote_write.decode_remote_write(body)`
  -> `result.DecodeResult` (samples + what was refused and why), or `IntakeError` for a
  body that can't be read at all;
- `limits.TenantLimits.admit(tenant, samples)` -> `limits.Admission` (what may be published,
  what was refused per reason, whether to answer "slow down");
- `otlp.encode_otlp_response` / `otlp.encode_otlp_status` for OTLP's answer bodies.

README.md in this folder maps each protocol to samples and to its error answers.
"""
