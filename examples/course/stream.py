"""A producer that runs until you stop it: one sensor reading a second; Ctrl-C stops it.

    python stream.py                # one a second
    python stream.py 0.1            # ten a second

Ctrl-C raises KeyboardInterrupt wherever the loop is; close() then delivers every
record already sent before the script ends.
"""

import json
import random
import sys
from datetime import datetime
from time import sleep

from kafka import KafkaProducer

TOPIC = 'streaming'
PAUSE_S = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0

if __name__ == "__main__":
    producer = KafkaProducer(
        bootstrap_servers='localhost:9092',
        value_serializer=lambda x: json.dumps(x).encode('utf-8'),
    )
    seq = 0
    try:
        while True:
            seq += 1
            message = {
                'seq': seq,
                'time': str(datetime.now()),
                'id': random.choice(['a', 'b', 'c', 'd']),
                'value': random.randint(0, 100),
            }
            producer.send(TOPIC, value=message)
            print(f"sent {message}")
            sleep(PAUSE_S)
    except KeyboardInterrupt:
        print("Ctrl-C: closing the producer (it delivers what was sent first)")
    finally:
        producer.close()
