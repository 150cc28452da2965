"""The baseline pixelgen is measured against: the tutorial's shape, in a loop.

For each image it builds a new OpenAI client, generates, writes the file,
builds a new Dodo client and sends that one event in a request of its own,
as a straight port of the tutorial's index.ts would.  No journal.

    python bench/naive_loop.py IMAGES
"""

from __future__ import annotations

import base64
import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import dodopayments
import openai


def main(images: int) -> None:
    folder = Path("naive-images")
    folder.mkdir(exist_ok=True)
    for n in range(images):
        client = openai.OpenAI()
        response = client.images.generate(model="gpt-image-2", prompt=f"robot {n}", quality="medium", n=1)
        (folder / f"{n}.png").write_bytes(base64.b64decode(response.data[0].b64_json or ""))
        dodo = dodopayments.DodoPayments(base_url=os.environ["DODO_PAYMENTS_BASE_URL"])
        dodo.usage_events.ingest(
            events=[
                {
                    "event_id": str(uuid.uuid4()),
                    "customer_id": os.environ["DODO_PAYMENTS_CUSTOMER_ID"],
                    "event_name": "image.generated",
                    "timestamp": datetime.now(timezone.utc).isoformat(),
                    "metadata": {"quality": "standard"},
                }
            ]
        )


if __name__ == "__main__":
    main(int(sys.argv[1]))
