"""Stateless processing: print only the large transactions (amount > 3000).

    python consumer_filter.py       # Ctrl-C stops it
"""

import json

from kafka import KafkaConsumer

consumer = KafkaConsumer(
    'transactions',
    bootstrap_servers='localhost:9092',
    group_id='filter-group',
    auto_offset_reset='earliest',
    value_deserializer=lambda x: json.loads(x.decode('utf-8')),
)

print("Listening for large transactions (amount > 3000) ...")
try:
    for message in consumer:
        tx = message.value
        if tx['amount'] > 3000:
            print(f"ALERT: {tx['tx_id']} | {tx['amount']:.2f} PLN | {tx['store']} | {tx['category']}")
except KeyboardInterrupt:
    pass
finally:
    consumer.close()  # commits the group's offsets: the next run goes on from here
