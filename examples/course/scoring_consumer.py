"""Decision rules on the stream: score each transaction, send the suspicious ones to `alerts`.

Rules: R1 amount > 3000: +3; R2 electronics over 1500: +2; R3 made before 6 a.m.: +2.
A score of 3 or more is an alert.

    python scoring_consumer.py      # Ctrl-C stops it
"""

import json
from datetime import datetime

from kafka import KafkaConsumer, KafkaProducer

consumer = KafkaConsumer(
    'transactions',
    bootstrap_servers='localhost:9092',
    group_id='scoring-group',
    auto_offset_reset='earliest',
    value_deserializer=lambda x: json.loads(x.decode('utf-8')),
)

alert_producer = KafkaProducer(
    bootstrap_servers='localhost:9092',
    value_serializer=lambda v: json.dumps(v).encode('utf-8'),
)


def score(tx):
    points, rules = 0, []
    if tx['amount'] > 3000:
        points += 3
        rules.append('R1')
    if tx['category'] == 'elektronika' and tx['amount'] > 1500:
        points += 2
        rules.append('R2')
    if datetime.fromisoformat(tx['timestamp']).hour < 6:
        points += 2
        rules.append('R3')
    return points, rules


try:
    for message in consumer:
        tx = message.value
        points, rules = score(tx)
        if points >= 3:
            alert_producer.send('alerts', value={**tx, 'score': points, 'rules': rules})
            print(f"ALERT: {tx['tx_id']} | score {points} ({', '.join(rules)}) | {tx['amount']:.2f} PLN")
except KeyboardInterrupt:
    pass
finally:
    consumer.close()
    alert_producer.close()  # sends the alerts still waiting in its buffer
