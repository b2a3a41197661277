"""Kafka's error codes and kafka-python's names."""

from labkit import errors


def test_codes_map_to_kafka_python_names():
    assert errors.for_code(36) is errors.TopicAlreadyExistsError
    assert errors.for_code(3) is errors.UnknownTopicOrPartitionError
    assert errors.TopicAlreadyExistsError.errno == 36
    assert errors.OffsetOutOfRangeError.errno == 1
    assert errors.MessageSizeTooLargeError.errno == 10
    assert errors.InvalidTopicError.errno == 17
    assert errors.KafkaStorageError.errno == 56


def test_unknown_code_is_unknown_error():
    assert errors.for_code(12345) is errors.UnknownError


def test_retriable_flags():
    assert errors.UnknownTopicOrPartitionError.retriable
    assert not errors.TopicAlreadyExistsError.retriable
    assert errors.NoBrokersAvailable.retriable


def test_from_wire_keeps_broker_message():
    exc = errors.from_wire(17, "topic name '../x' has invalid characters")
    assert isinstance(exc, errors.InvalidTopicError)
    assert "../x" in str(exc)
    assert isinstance(exc, errors.KafkaError)


def test_commit_failed_says_what_to_do():
    assert "max_poll_interval_ms" in str(errors.CommitFailedError())


def test_client_side_errors_import_from_labkit_like_kafka_python():
    import labkit

    assert labkit.NoOffsetForPartitionError is errors.NoOffsetForPartitionError
    assert issubclass(labkit.NoOffsetForPartitionError, labkit.KafkaError)


def test_each_coded_error_describes_itself_like_kafka_python():
    cls = errors.KafkaStorageError
    assert (cls.errno, cls.message, cls.retriable, cls.invalid_metadata) == (
        56,
        "KAFKASTORAGE",
        True,
        False,
    )
    assert (
        cls.description == cls.__doc__ == ("Disk error when trying to access log file on the disk.")
    )
    assert errors.NoError.message == "NO_ERROR"
    assert str(errors.NotCoordinatorError()) == (
        "NotCoordinatorError - 16 - This is not the correct coordinator."
    )


def test_a_refined_error_keeps_its_code_and_for_code_its_class():
    class DataDirLocked(errors.InvalidConfigurationError):
        """Another broker holds the directory."""

    assert DataDirLocked.errno == 40
    assert DataDirLocked.description == "Configuration is invalid."
    assert errors.for_code(40) is errors.InvalidConfigurationError
