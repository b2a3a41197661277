"""Lab 1's producer: card transactions as JSON, keyed by user, to the topic `transactions`.

    python producer.py              # 1000 transactions, one every 0.5 s
    python producer.py 100 0.1      # 100 of them, one every 0.1 s
"""

import json
import random
import sys
import time
from datetime import datetime

from kafka import KafkaProducer

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
PAUSE_S = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5

producer = KafkaProducer(
    bootstrap_servers='localhost:9092',
    key_serializer=lambda k: k.encode('utf-8'),
    value_serializer=lambda v: json.dumps(v).encode('utf-8'),
)

STORES = ['Warszawa', 'Kraków', 'Gdańsk', 'Wrocław']
CATEGORIES = ['elektronika', 'odzież', 'żywność', 'książki']


def generate_transaction(number):
    return {
        'tx_id': f'TX{number:04d}',
        'user_id': f'u{random.randint(1, 20):02d}',
        'amount': round(random.uniform(5.0, 5000.0), 2),
        'store': random.choice(STORES),
        'category': random.choice(CATEGORIES),
        'timestamp': datetime.now().isoformat(),
    }


for i in range(1, COUNT + 1):
    tx = generate_transaction(i)
    # the key (user_id) puts all of one user's transactions in one partition, in order
    producer.send('transactions', key=tx['user_id'], value=tx)
    print(f"[{i}] {tx['tx_id']} | {tx['amount']:.2f} PLN | {tx['store']}")
    time.sleep(PAUSE_S)

producer.flush()
producer.close()
