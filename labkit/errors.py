"""The error tree: kafka-python's class names, Kafka's error codes (``errno``).

Every error a user can see is a ``KafkaError``. Errors the broker reports on the
wire are ``BrokerResponseError`` subclasses with Kafka's numeric code, so code
written for kafka-python (``except kafka.errors.TopicAlreadyExistsError``) keeps
working with one changed import. ``retriable`` says whether trying again may
succeed; ``for_code(n)`` maps a wire code back to its class.

Messages are written for students: each says what happened and what to do next.
"""

from __future__ import annotations


class KafkaError(RuntimeError):
    """Base class of every labkit/Kafka error."""

    retriable = False
    invalid_metadata = False

    def __str__(self) -> str:
        if not self.args:
            return self.__class__.__name__
        return f"{self.__class__.__name__}: {super().__str__()}"


# -- client-side errors (no wire code) ---------------------------------------


class IllegalStateError(KafkaError):
    pass


class IllegalArgumentError(KafkaError):
    pass


class NoBrokersAvailable(KafkaError):
    retriable = True
    invalid_metadata = True


class NodeNotReadyError(KafkaError):
    retriable = True


class KafkaProtocolError(KafkaError):
    retriable = True


class CorrelationIdError(KafkaProtocolError):
    retriable = True


class Cancelled(KafkaError):
    retriable = True


class TooManyInFlightRequests(KafkaError):
    retriable = True


class StaleMetadata(KafkaError):
    retriable = True
    invalid_metadata = True


class MetadataEmptyBrokerList(KafkaError):
    retriable = True


class UnrecognizedBrokerVersion(KafkaError):
    pass


class IncompatibleBrokerVersion(KafkaError):
    pass


class CommitFailedError(KafkaError):
    """A commit was rejected because the group rebalanced since the records were fetched."""

    def __init__(self, *args):
        if not args:
            args = (
                "Commit cannot be completed since the group has already rebalanced and "
                "assigned the partitions to another member. This means that the time "
                "between subsequent calls to poll() was longer than the configured "
                "max_poll_interval_ms, or the member's session expired. Poll more often, "
                "process fewer records per poll (max_poll_records), or raise "
                "max_poll_interval_ms; the records will be delivered again.",
            )
        super().__init__(*args)


class AuthenticationMethodNotSupported(KafkaError):
    pass


class AuthenticationFailedError(KafkaError):
    retriable = False


class UnsupportedCodecError(KafkaError):
    pass


class KafkaConfigurationError(KafkaError):
    pass


class QuotaViolationError(KafkaError):
    pass


class AsyncProducerQueueFull(KafkaError):
    pass


class KafkaConnectionError(KafkaError):
    retriable = True
    invalid_metadata = True


class KafkaTimeoutError(KafkaError):
    retriable = True


class KafkaUnavailableError(KafkaError):
    pass


class ProtocolError(KafkaError):
    """Bytes that are not a valid labkit frame or record batch."""


# -- errors the broker reports, with Kafka's codes ----------------------------


class BrokerResponseError(KafkaError):
    errno: int | None = None
    message: str | None = None
    description: str | None = None

    def __str__(self) -> str:
        detail = super().__str__()
        if self.args:
            return detail
        return f"{self.__class__.__name__} - {self.errno} - {self.description}"


def _code(
    name: str,
    errno: int,
    description: str,
    *,
    retriable: bool = False,
    invalid_metadata: bool = False,
) -> type[BrokerResponseError]:
    cls = type(
        name,
        (BrokerResponseError,),
        {
            "errno": errno,
            "message": name.removesuffix("Error").upper(),
            "description": description,
            "retriable": retriable,
            "invalid_metadata": invalid_metadata,
            "__module__": __name__,
            "__doc__": description,
        },
    )
    globals()[name] = cls
    _BY_CODE[errno] = cls
    return cls


_BY_CODE: dict[int, type[BrokerResponseError]] = {}

# fmt: off
NoError = _code("NoError", 0, "No error--it worked!")
UnknownError = _code("UnknownError", -1, "The server experienced an unexpected error when processing the request.")
OffsetOutOfRangeError = _code("OffsetOutOfRangeError", 1, "The requested offset is not within the range of offsets maintained by the server.")
CorruptRecordError = _code("CorruptRecordError", 2, "The record failed its CRC check, exceeds the valid size, or is otherwise corrupt.")
UnknownTopicOrPartitionError = _code("UnknownTopicOrPartitionError", 3, "This server does not host this topic-partition.", retriable=True, invalid_metadata=True)
InvalidFetchRequestError = _code("InvalidFetchRequestError", 4, "The message has a negative size.")
LeaderNotAvailableError = _code("LeaderNotAvailableError", 5, "There is no leader for this topic-partition.", retriable=True, invalid_metadata=True)
NotLeaderForPartitionError = _code("NotLeaderForPartitionError", 6, "This server is not the leader for that topic-partition.", retriable=True, invalid_metadata=True)
RequestTimedOutError = _code("RequestTimedOutError", 7, "The request timed out.", retriable=True)
BrokerNotAvailableError = _code("BrokerNotAvailableError", 8, "The broker is not available.")
ReplicaNotAvailableError = _code("ReplicaNotAvailableError", 9, "The replica is not available for the requested topic-partition.")
MessageSizeTooLargeError = _code("MessageSizeTooLargeError", 10, "The request included a message larger than the max message size the server will accept.")
StaleControllerEpochError = _code("StaleControllerEpochError", 11, "The controller moved to another broker.")
OffsetMetadataTooLargeError = _code("OffsetMetadataTooLargeError", 12, "The metadata field of the offset request was too large.")
NetworkExceptionError = _code("NetworkExceptionError", 13, "The server disconnected before a response was received.", retriable=True)
CoordinatorLoadInProgressError = _code("CoordinatorLoadInProgressError", 14, "The coordinator is loading and hence can't process requests.", retriable=True)
CoordinatorNotAvailableError = _code("CoordinatorNotAvailableError", 15, "The coordinator is not available.", retriable=True)
NotCoordinatorError = _code("NotCoordinatorError", 16, "This is not the correct coordinator.", retriable=True)
InvalidTopicError = _code("InvalidTopicError", 17, "The request attempted to perform an operation on an invalid topic.")
RecordListTooLargeError = _code("RecordListTooLargeError", 18, "The request included message batch larger than the configured segment size on the server.")
NotEnoughReplicasError = _code("NotEnoughReplicasError", 19, "Messages are rejected since there are fewer in-sync replicas than required.", retriable=True)
NotEnoughReplicasAfterAppendError = _code("NotEnoughReplicasAfterAppendError", 20, "Messages are written to the log, but to fewer in-sync replicas than required.", retriable=True)
InvalidRequiredAcksError = _code("InvalidRequiredAcksError", 21, "Produce request specified an invalid value for required acks.")
IllegalGenerationError = _code("IllegalGenerationError", 22, "Specified group generation id is not valid.")
InconsistentGroupProtocolError = _code("InconsistentGroupProtocolError", 23, "The group member's supported protocols are incompatible with those of existing members.")
InvalidGroupIdError = _code("InvalidGroupIdError", 24, "The configured groupId is invalid.")
UnknownMemberIdError = _code("UnknownMemberIdError", 25, "The coordinator is not aware of this member.")
InvalidSessionTimeoutError = _code("InvalidSessionTimeoutError", 26, "The session timeout is not within the range allowed by the broker.")
RebalanceInProgressError = _code("RebalanceInProgressError", 27, "The group is rebalancing, so a rejoin is needed.")
InvalidCommitOffsetSizeError = _code("InvalidCommitOffsetSizeError", 28, "The committing offset data size is not valid.")
TopicAuthorizationFailedError = _code("TopicAuthorizationFailedError", 29, "Topic authorization failed.")
GroupAuthorizationFailedError = _code("GroupAuthorizationFailedError", 30, "Group authorization failed.")
ClusterAuthorizationFailedError = _code("ClusterAuthorizationFailedError", 31, "Cluster authorization failed.")
InvalidTimestampError = _code("InvalidTimestampError", 32, "The timestamp of the message is out of acceptable range.")
UnsupportedSaslMechanismError = _code("UnsupportedSaslMechanismError", 33, "The broker does not support the requested SASL mechanism.")
IllegalSaslStateError = _code("IllegalSaslStateError", 34, "Request is not valid given the current SASL state.")
UnsupportedVersionError = _code("UnsupportedVersionError", 35, "The version of API is not supported.")
TopicAlreadyExistsError = _code("TopicAlreadyExistsError", 36, "Topic with this name already exists.")
InvalidPartitionsError = _code("InvalidPartitionsError", 37, "Number of partitions is invalid.")
InvalidReplicationFactorError = _code("InvalidReplicationFactorError", 38, "Replication-factor is invalid.")
InvalidReplicationAssignmentError = _code("InvalidReplicationAssignmentError", 39, "Replication assignment is invalid.")
InvalidConfigurationError = _code("InvalidConfigurationError", 40, "Configuration is invalid.")
NotControllerError = _code("NotControllerError", 41, "This is not the correct controller for this cluster.", retriable=True)
InvalidRequestError = _code("InvalidRequestError", 42, "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker.")
UnsupportedForMessageFormatError = _code("UnsupportedForMessageFormatError", 43, "The message format version on the broker does not support this request.")
PolicyViolationError = _code("PolicyViolationError", 44, "Request parameters do not satisfy the configured policy.")
KafkaStorageError = _code("KafkaStorageError", 56, "Disk error when trying to access log file on the disk.", retriable=True)
LogDirNotFoundError = _code("LogDirNotFoundError", 57, "The user-specified log directory is not found in the broker config.")
UnknownProducerIdError = _code("UnknownProducerIdError", 59, "The broker could not locate the producer metadata associated with the producer id.")
NonEmptyGroupError = _code("NonEmptyGroupError", 68, "The group is not empty.")
GroupIdNotFoundError = _code("GroupIdNotFoundError", 69, "The group id does not exist.")
UnsupportedCompressionTypeError = _code("UnsupportedCompressionTypeError", 76, "The requesting client does not support the compression type of given partition.")
MemberIdRequiredError = _code("MemberIdRequiredError", 79, "The group member needs to have a valid member id before actually entering a consumer group.")
GroupMaxSizeReachedError = _code("GroupMaxSizeReachedError", 81, "The consumer group has reached its max size.")
FencedInstanceIdError = _code("FencedInstanceIdError", 82, "The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id.")
InvalidRecordError = _code("InvalidRecordError", 87, "This record has failed the validation on broker and hence will be rejected.")
# fmt: on

# Older kafka-python names for the same codes.
GroupLoadInProgressError = CoordinatorLoadInProgressError
GroupCoordinatorNotAvailableError = CoordinatorNotAvailableError
NotCoordinatorForGroupError = NotCoordinatorError

NoError.message = "NO_ERROR"  # kafka-python's spelling
NO_ERROR = 0


def for_code(errno: int) -> type[KafkaError]:
    """The error class for a wire error code (``UnknownError`` for codes we do not know;
    ``NoError`` for 0, as kafka-python's ``kafka.errors.for_code``)."""
    return _BY_CODE.get(errno, UnknownError)


def from_wire(errno: int, message: str | None = None) -> KafkaError:
    """An error instance for a code and the broker's message, ready to raise."""
    cls = for_code(errno)
    return cls(message) if message else cls()


class NoOffsetForPartitionError(KafkaError):
    """A partition has no position and ``auto_offset_reset='none'`` forbids choosing one."""
