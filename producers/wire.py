"""Turnout records to and from their Kafka bytes, from the shell: for clients that move
bytes but do not speak Avro, such as ``kcat``::

    python -m turnout.producers.wire encode < request.json > request.bin
    kcat -P -b localhost:9092 -t turnout.requests -k "$ID" request.bin
    kcat -C -b localhost:9092 -t turnout.responses -o end -c 1 -f '%s' | python -m turnout.producers.wire decode

``encode`` reads one ``InferenceRequest`` as JSON (``id``, ``tenant``, ``messages`` are
enough) and writes it framed as Avro single-object encoding, which every Turnout reader
accepts without a registry. ``decode`` reads one framed record (either framing; give
``--registry URL`` for Confluent-framed bytes) and prints it as JSON.
"""

from __future__ import annotations

import argparse
import sys

from turnout.schemas.models import InferenceRequest, InferenceResponse
from turnout.schemas.registry import ConfluentRegistryClient
from turnout.schemas.serde import AvroCodec, DecodeError

_MODELS = {"InferenceRequest": InferenceRequest, "InferenceResponse": InferenceResponse}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m turnout.producers.wire", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["encode", "decode"])
    parser.add_argument("--type", choices=sorted(_MODELS), default=None, help="record type (default: encode a request, decode a response)")
    parser.add_argument("--registry", default=None, help="schema registry URL: Confluent framing instead of single-object")
    args = parser.parse_args(argv)
    codec = AvroCodec(ConfluentRegistryClient(args.registry) if args.registry else None)
    if args.action == "encode":
        model = _MODELS[args.type or "InferenceRequest"]
        sys.stdout.buffer.write(codec.encode(model.model_validate_json(sys.stdin.buffer.read())))
        return 0
    model = _MODELS[args.type or "InferenceResponse"]
    try:
        record = codec.decode(sys.stdin.buffer.read(), model)
    except DecodeError as exc:
        print(f"cannot decode as {model.__name__}: {exc}", file=sys.stderr)
        return 1
    print(record.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
