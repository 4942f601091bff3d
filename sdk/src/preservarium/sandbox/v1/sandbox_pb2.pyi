from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_COMPILE_ERROR: _ClassVar[ErrorKind]
    ERROR_KIND_MISSING_FUNCTION: _ClassVar[ErrorKind]
    ERROR_KIND_IMPORT_DENIED: _ClassVar[ErrorKind]
    ERROR_KIND_RUNTIME_ERROR: _ClassVar[ErrorKind]
    ERROR_KIND_TIMEOUT: _ClassVar[ErrorKind]
    ERROR_KIND_MEMORY_LIMIT: _ClassVar[ErrorKind]
    ERROR_KIND_INVALID_OUTPUT: _ClassVar[ErrorKind]
    ERROR_KIND_QUARANTINED: _ClassVar[ErrorKind]
    ERROR_KIND_PARSER_NOT_FOUND: _ClassVar[ErrorKind]
    ERROR_KIND_SANDBOX_UNAVAILABLE: _ClassVar[ErrorKind]
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_COMPILE_ERROR: ErrorKind
ERROR_KIND_MISSING_FUNCTION: ErrorKind
ERROR_KIND_IMPORT_DENIED: ErrorKind
ERROR_KIND_RUNTIME_ERROR: ErrorKind
ERROR_KIND_TIMEOUT: ErrorKind
ERROR_KIND_MEMORY_LIMIT: ErrorKind
ERROR_KIND_INVALID_OUTPUT: ErrorKind
ERROR_KIND_QUARANTINED: ErrorKind
ERROR_KIND_PARSER_NOT_FOUND: ErrorKind
ERROR_KIND_SANDBOX_UNAVAILABLE: ErrorKind

class ScriptError(_message.Message):
    __slots__ = ("kind", "message", "line")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    kind: ErrorKind
    message: str
    line: int
    def __init__(self, kind: _Optional[_Union[ErrorKind, str]] = ..., message: _Optional[str] = ..., line: _Optional[int] = ...) -> None: ...

class Contact(_message.Message):
    __slots__ = ("payload", "device_id", "device_type", "path", "method", "confirmable", "received_at", "query", "attributes_json", "uplink_id")
    class QueryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CONFIRMABLE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    UPLINK_ID_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    device_id: str
    device_type: str
    path: str
    method: str
    confirmable: bool
    received_at: int
    query: _containers.ScalarMap[str, str]
    attributes_json: str
    uplink_id: str
    def __init__(self, payload: _Optional[bytes] = ..., device_id: _Optional[str] = ..., device_type: _Optional[str] = ..., path: _Optional[str] = ..., method: _Optional[str] = ..., confirmable: _Optional[bool] = ..., received_at: _Optional[int] = ..., query: _Optional[_Mapping[str, str]] = ..., attributes_json: _Optional[str] = ..., uplink_id: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("request_id", "device_id", "command", "params_json", "attributes_json")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_JSON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    device_id: str
    command: str
    params_json: str
    attributes_json: str
    def __init__(self, request_id: _Optional[str] = ..., device_id: _Optional[str] = ..., command: _Optional[str] = ..., params_json: _Optional[str] = ..., attributes_json: _Optional[str] = ...) -> None: ...

class ParserRef(_message.Message):
    __slots__ = ("name", "version", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ParseResult(_message.Message):
    __slots__ = ("device_id", "data_json", "reply", "warnings", "token")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    data_json: bytes
    reply: bytes
    warnings: _containers.RepeatedScalarFieldContainer[str]
    token: str
    def __init__(self, device_id: _Optional[str] = ..., data_json: _Optional[bytes] = ..., reply: _Optional[bytes] = ..., warnings: _Optional[_Iterable[str]] = ..., token: _Optional[str] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("payload", "error")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    error: ScriptError
    def __init__(self, payload: _Optional[bytes] = ..., error: _Optional[_Union[ScriptError, _Mapping]] = ...) -> None: ...

class ParseRequest(_message.Message):
    __slots__ = ("contact", "identify", "command", "version", "background")
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    contact: Contact
    identify: bool
    command: Command
    version: int
    background: bool
    def __init__(self, contact: _Optional[_Union[Contact, _Mapping]] = ..., identify: _Optional[bool] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., version: _Optional[int] = ..., background: _Optional[bool] = ...) -> None: ...

class ParseResponse(_message.Message):
    __slots__ = ("result", "error", "parser", "command", "duration_ms", "identified_device_id", "identified_token", "printed", "live_waited")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARSER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRINTED_FIELD_NUMBER: _ClassVar[int]
    LIVE_WAITED_FIELD_NUMBER: _ClassVar[int]
    result: ParseResult
    error: ScriptError
    parser: ParserRef
    command: CommandResult
    duration_ms: float
    identified_device_id: str
    identified_token: str
    printed: str
    live_waited: int
    def __init__(self, result: _Optional[_Union[ParseResult, _Mapping]] = ..., error: _Optional[_Union[ScriptError, _Mapping]] = ..., parser: _Optional[_Union[ParserRef, _Mapping]] = ..., command: _Optional[_Union[CommandResult, _Mapping]] = ..., duration_ms: _Optional[float] = ..., identified_device_id: _Optional[str] = ..., identified_token: _Optional[str] = ..., printed: _Optional[str] = ..., live_waited: _Optional[int] = ...) -> None: ...

class FormatCommandRequest(_message.Message):
    __slots__ = ("device_type", "command")
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    device_type: str
    command: Command
    def __init__(self, device_type: _Optional[str] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class FormatCommandResponse(_message.Message):
    __slots__ = ("result", "parser", "duration_ms")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PARSER_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    result: CommandResult
    parser: ParserRef
    duration_ms: float
    def __init__(self, result: _Optional[_Union[CommandResult, _Mapping]] = ..., parser: _Optional[_Union[ParserRef, _Mapping]] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class TestParserRequest(_message.Message):
    __slots__ = ("source", "contact", "identify", "command")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    source: str
    contact: Contact
    identify: bool
    command: Command
    def __init__(self, source: _Optional[str] = ..., contact: _Optional[_Union[Contact, _Mapping]] = ..., identify: _Optional[bool] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class TestParserResponse(_message.Message):
    __slots__ = ("result", "error", "command", "duration_ms", "printed")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PRINTED_FIELD_NUMBER: _ClassVar[int]
    result: ParseResult
    error: ScriptError
    command: CommandResult
    duration_ms: float
    printed: str
    def __init__(self, result: _Optional[_Union[ParseResult, _Mapping]] = ..., error: _Optional[_Union[ScriptError, _Mapping]] = ..., command: _Optional[_Union[CommandResult, _Mapping]] = ..., duration_ms: _Optional[float] = ..., printed: _Optional[str] = ...) -> None: ...

class ParseStreamItem(_message.Message):
    __slots__ = ("id", "request")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    id: int
    request: ParseRequest
    def __init__(self, id: _Optional[int] = ..., request: _Optional[_Union[ParseRequest, _Mapping]] = ...) -> None: ...

class ParseStreamRequest(_message.Message):
    __slots__ = ("id", "request", "items")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    id: int
    request: ParseRequest
    items: _containers.RepeatedCompositeFieldContainer[ParseStreamItem]
    def __init__(self, id: _Optional[int] = ..., request: _Optional[_Union[ParseRequest, _Mapping]] = ..., items: _Optional[_Iterable[_Union[ParseStreamItem, _Mapping]]] = ...) -> None: ...

class ParseStreamResponse(_message.Message):
    __slots__ = ("id", "response")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    id: int
    response: ParseResponse
    def __init__(self, id: _Optional[int] = ..., response: _Optional[_Union[ParseResponse, _Mapping]] = ...) -> None: ...
