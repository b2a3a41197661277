"""Stateful processing: transactions and their sum per store, a table every 10 messages.

    python consumer_count.py        # Ctrl-C stops it
"""

import json
from collections import Counter, defaultdict

from kafka import KafkaConsumer

consumer = KafkaConsumer(
    'transactions',
    bootstrap_servers='localhost:9092',
    group_id='count-group',
    auto_offset_reset='earliest',
    value_deserializer=lambda x: json.loads(x.decode('utf-8')),
)

store_counts = Counter()
total_amount = defaultdict(float)
msg_count = 0

try:
    for message in consumer:
        tx = message.value
        store_counts[tx['store']] += 1
        total_amount[tx['store']] += tx['amount']
        msg_count += 1
        if msg_count % 10 == 0:
            print(f"--- after {msg_count} messages ---")
            print(f"{'Store':<10} | {'Count':>5} | {'Sum':>10} | {'Average':>8}")
            for store, count in store_counts.most_common():
                total = total_amount[store]
                print(f"{store:<10} | {count:>5} | {total:>10.2f} | {total / count:>8.2f}")
except KeyboardInterrupt:
    pass
finally:
    consumer.close()
