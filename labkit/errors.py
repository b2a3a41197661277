"""The error tree: kafka-python's class names, Kafka's error codes (``errno``).

Every error a user can see is a ``KafkaError``. Errors the broker reports on the
wire are ``BrokerResponseError`` subclasses with Kafka's numeric code, so code
written for kafka-python (``except kafka.errors.TopicAlreadyExistsError``) keeps
working with one changed import. ``retriable`` says whether trying again may
succeed; ``for_code(n)`` maps a wire code back to its class.

Messages are written for students: each says what happened and what to do next.
"""

from __future__ import annotations

from typing import Any


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

    # Set once the frame's request id could be read, so the broker can answer that request.
    request_id: bytes | None = None


# -- errors the broker reports, with Kafka's codes ----------------------------


_BY_CODE: dict[int, type[BrokerResponseError]] = {}


class BrokerResponseError(KafkaError):
    """An error the broker reports with Kafka's numeric code.

    Each coded error is a subclass that names its code in the class statement
    (``class OffsetOutOfRangeError(BrokerResponseError, errno=1)``), with Kafka's
    description as its docstring; ``for_code`` finds it again. A subclass without
    ``errno`` refines a coded error and keeps its code.
    """

    # None on this base class (as in kafka-python); every coded subclass sets an int,
    # and only those are raised or compared, so code reads ``X.errno`` as an int.
    errno: int = None  # type: ignore[assignment]
    message: str | None = None
    description: str | None = None

    def __init_subclass__(
        cls,
        errno: int | None = None,
        retriable: bool = False,
        invalid_metadata: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if errno is None:
            return
        cls.errno = errno
        cls.message = cls.__name__.removesuffix("Error").upper()
        cls.description = cls.__doc__
        cls.retriable = retriable
        cls.invalid_metadata = invalid_metadata
        _BY_CODE[errno] = cls

    def __str__(self) -> str:
        detail = super().__str__()
        if self.args:
            return detail
        return f"{self.__class__.__name__} - {self.errno} - {self.description}"


class NoError(BrokerResponseError, errno=0):
    """No error--it worked!"""


class UnknownError(BrokerResponseError, errno=-1):
    """The server experienced an unexpected error when processing the request."""


class OffsetOutOfRangeError(BrokerResponseError, errno=1):
    """The requested offset is not within the range of offsets maintained by the server."""


class CorruptRecordError(BrokerResponseError, errno=2):
    """The record failed its CRC check, exceeds the valid size, or is otherwise corrupt."""

    # Set by the consumer: where the damage is and the offset to seek() to get past it.
    topic_partition: Any = None
    offset: int | None = None
    next_offset: int | None = None


class UnknownTopicOrPartitionError(
    BrokerResponseError, errno=3, retriable=True, invalid_metadata=True
):
    """This server does not host this topic-partition."""


class InvalidFetchRequestError(BrokerResponseError, errno=4):
    """The message has a negative size."""


class LeaderNotAvailableError(BrokerResponseError, errno=5, retriable=True, invalid_metadata=True):
    """There is no leader for this topic-partition."""


class NotLeaderForPartitionError(
    BrokerResponseError, errno=6, retriable=True, invalid_metadata=True
):
    """This server is not the leader for that topic-partition."""


class RequestTimedOutError(BrokerResponseError, errno=7, retriable=True):
    """The request timed out."""


class BrokerNotAvailableError(BrokerResponseError, errno=8):
    """The broker is not available."""


class ReplicaNotAvailableError(BrokerResponseError, errno=9):
    """The replica is not available for the requested topic-partition."""


class MessageSizeTooLargeError(BrokerResponseError, errno=10):
    """The request included a message larger than the max message size the server will accept."""


class StaleControllerEpochError(BrokerResponseError, errno=11):
    """The controller moved to another broker."""


class OffsetMetadataTooLargeError(BrokerResponseError, errno=12):
    """The metadata field of the offset request was too large."""


class NetworkExceptionError(BrokerResponseError, errno=13, retriable=True):
    """The server disconnected before a response was received."""


class CoordinatorLoadInProgressError(BrokerResponseError, errno=14, retriable=True):
    """The coordinator is loading and hence can't process requests."""


class CoordinatorNotAvailableError(BrokerResponseError, errno=15, retriable=True):
    """The coordinator is not available."""


class NotCoordinatorError(BrokerResponseError, errno=16, retriable=True):
    """This is not the correct coordinator."""


class InvalidTopicError(BrokerResponseError, errno=17):
    """The request attempted to perform an operation on an invalid topic."""


class RecordListTooLargeError(BrokerResponseError, errno=18):
    """The request included message batch larger than the configured segment size on the server."""


class NotEnoughReplicasError(BrokerResponseError, errno=19, retriable=True):
    """Messages are rejected since there are fewer in-sync replicas than required."""


class NotEnoughReplicasAfterAppendError(BrokerResponseError, errno=20, retriable=True):
    """Messages are written to the log, but to fewer in-sync replicas than required."""


class InvalidRequiredAcksError(BrokerResponseError, errno=21):
    """Produce request specified an invalid value for required acks."""


class IllegalGenerationError(BrokerResponseError, errno=22):
    """Specified group generation id is not valid."""


class InconsistentGroupProtocolError(BrokerResponseError, errno=23):
    """The group member's supported protocols are incompatible with those of existing members."""


class InvalidGroupIdError(BrokerResponseError, errno=24):
    """The configured groupId is invalid."""


class UnknownMemberIdError(BrokerResponseError, errno=25):
    """The coordinator is not aware of this member."""


class InvalidSessionTimeoutError(BrokerResponseError, errno=26):
    """The session timeout is not within the range allowed by the broker."""


class RebalanceInProgressError(BrokerResponseError, errno=27):
    """The group is rebalancing, so a rejoin is needed."""


class InvalidCommitOffsetSizeError(BrokerResponseError, errno=28):
    """The committing offset data size is not valid."""


class TopicAuthorizationFailedError(BrokerResponseError, errno=29):
    """Topic authorization failed."""


class GroupAuthorizationFailedError(BrokerResponseError, errno=30):
    """Group authorization failed."""


class ClusterAuthorizationFailedError(BrokerResponseError, errno=31):
    """Cluster authorization failed."""


class InvalidTimestampError(BrokerResponseError, errno=32):
    """The timestamp of the message is out of acceptable range."""


class UnsupportedSaslMechanismError(BrokerResponseError, errno=33):
    """The broker does not support the requested SASL mechanism."""


class IllegalSaslStateError(BrokerResponseError, errno=34):
    """Request is not valid given the current SASL state."""


class UnsupportedVersionError(BrokerResponseError, errno=35):
    """The version of API is not supported."""


class TopicAlreadyExistsError(BrokerResponseError, errno=36):
    """Topic with this name already exists."""


class InvalidPartitionsError(BrokerResponseError, errno=37):
    """Number of partitions is invalid."""


class InvalidReplicationFactorError(BrokerResponseError, errno=38):
    """Replication-factor is invalid."""


class InvalidReplicationAssignmentError(BrokerResponseError, errno=39):
    """Replication assignment is invalid."""


class InvalidConfigurationError(BrokerResponseError, errno=40):
    """Configuration is invalid."""


class NotControllerError(BrokerResponseError, errno=41, retriable=True):
    """This is not the correct controller for this cluster."""


class InvalidRequestError(BrokerResponseError, errno=42):
    """This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker."""


class UnsupportedForMessageFormatError(BrokerResponseError, errno=43):
    """The message format version on the broker does not support this request."""


class PolicyViolationError(BrokerResponseError, errno=44):
    """Request parameters do not satisfy the configured policy."""


class OutOfOrderSequenceNumberError(BrokerResponseError, errno=45):
    """The broker received an out of order sequence number."""


class DuplicateSequenceNumberError(BrokerResponseError, errno=46):
    """The broker received a duplicate sequence number."""


class InvalidProducerEpochError(BrokerResponseError, errno=47):
    """Producer attempted an operation with an old epoch."""


class KafkaStorageError(BrokerResponseError, errno=56, retriable=True):
    """Disk error when trying to access log file on the disk."""


class LogDirNotFoundError(BrokerResponseError, errno=57):
    """The user-specified log directory is not found in the broker config."""


class UnknownProducerIdError(BrokerResponseError, errno=59):
    """The broker could not locate the producer metadata associated with the producer id."""


class NonEmptyGroupError(BrokerResponseError, errno=68):
    """The group is not empty."""


class GroupIdNotFoundError(BrokerResponseError, errno=69):
    """The group id does not exist."""


class FencedLeaderEpochError(BrokerResponseError, errno=74, retriable=True, invalid_metadata=True):
    """The leader epoch in the request is older than the epoch on the broker."""


class UnknownLeaderEpochError(BrokerResponseError, errno=75, retriable=True, invalid_metadata=True):
    """The leader epoch in the request is newer than the epoch on the broker."""


class UnsupportedCompressionTypeError(BrokerResponseError, errno=76):
    """The requesting client does not support the compression type of given partition."""


class MemberIdRequiredError(BrokerResponseError, errno=79):
    """The group member needs to have a valid member id before actually entering a consumer group."""


class GroupMaxSizeReachedError(BrokerResponseError, errno=81):
    """The consumer group has reached its max size."""


class FencedInstanceIdError(BrokerResponseError, errno=82):
    """The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id."""


class GroupSubscribedToTopicError(BrokerResponseError, errno=86):
    """The consumer group is actively subscribed to the topic."""


class InvalidRecordError(BrokerResponseError, errno=87):
    """This record has failed the validation on broker and hence will be rejected."""


# Older kafka-python names for the same codes.
GroupLoadInProgressError = CoordinatorLoadInProgressError
GroupCoordinatorNotAvailableError = CoordinatorNotAvailableError
NotCoordinatorForGroupError = NotCoordinatorError

NoError.message = "NO_ERROR"  # kafka-python's spelling
NO_ERROR = 0


def for_code(errno: int) -> type[BrokerResponseError]:
    """The error class for a wire error code (``UnknownError`` for codes we do not know;
    ``NoError`` for 0, as kafka-python's ``kafka.errors.for_code``)."""
    return _BY_CODE.get(errno, UnknownError)


def from_wire(errno: int, message: str | None = None) -> KafkaError:
    """An error instance for a code and the broker's message, ready to raise."""
    cls = for_code(errno)
    return cls(message) if message else cls()


class NoOffsetForPartitionError(KafkaError):
    """A partition has no position and ``auto_offset_reset='none'`` forbids choosing one."""
