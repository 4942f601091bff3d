"""Parser for Efento NB-IoT sensors (firmware 06.x and 07.x) talking CoAP.

Efento sensors send protobuf messages (github.com/efento/Proto-files) to four paths:

    m  measurements (ProtoMeasurements)        -> parse() decodes every channel
    i  device information (ProtoDeviceInfo)    -> parse() decodes what an operator needs
    c  configuration (ProtoConfig)             -> parse() decodes settings, errors, rules,
                                                  the hash and its timestamp, and which
                                                  part of a split configuration it is
    t  time request, GET or POST (body ignored) -> reply() answers the Unix time, 4 bytes

The device id is the 6-byte serial number inside the payload, written as 12 lower-case
hex digits: field 1 of the measurements and device-info messages, field 25 of the
configuration message (field 1 is reserved there).

Downlinks are serialised ProtoConfig messages: format_command() builds them for the
`set_config` (every setting an operator sets: periods, intervals, requests, time, servers,
endpoints, APN, PLMN, DNS, cloud token, supervision, rules and calendars; see SETTABLE),
`request_device_info` and `request_configuration` commands, written as protobuf writes
them (field-number order, no proto3 defaults). docs/efento.md documents each setting.

parse() output of a measurements message follows the project's measurement convention:
`measurements` is a list of {"channel", "type", "timestamp", "value"} (or "error_code" in
place of "value" for a sensor error; binary types give true/false). Types that carry
metadata in their raw value add it: "calibration_status" (air quality, CO2),
"meter_status" (meter major counters), "major_channel" (meter minor counters).
`meter_totals` combines each meter's minor and major channels into one reading.

The protobuf wire format is decoded with the vetted `protowire` helper, so no generated
code is needed. Malformed payloads raise ValueError with a message naming the problem;
fields this parser does not know are skipped, as protobuf requires.
"""

import datetime
import struct

import protowire

# --- protocol constants ------------------------------------------------------------------

VARINT = protowire.VARINT
LEN = protowire.LEN
UINT32_MAX = 4294967295
WIRE_TYPES = {0: "0 (varint)", 1: "1 (64-bit)", 2: "2 (length-delimited)", 5: "5 (32-bit)"}

# A continuous sample offset in this range is a sensor error code, not a value.
SENSOR_ERROR_LOW = 8355840
SENSOR_ERROR_HIGH = 8388607

# Measurement types: number -> (name, kind, divisor).
# kind: "continuous" (value = (start_point + offset) / divisor),
#       "binary" (sign of each offset is the state, |offset| - 1 the seconds since timestamp),
#       "calibrated" (value = raw div 3, raw mod 3 = calibration state),
#       "major" (meter major counter: value = raw div 4, raw mod 4 = counter status),
#       "minor" (meter minor counter: value = raw div 6, raw mod 6 = index of its major channel).
# The divisor turns the raw integer into the unit the type documents (0.1 degC -> 10).
MEASUREMENT_TYPES = {
    1: ("temperature", "continuous", 10),
    2: ("humidity", "continuous", 1),
    3: ("atmospheric_pressure", "continuous", 10),
    4: ("differential_pressure", "continuous", 1),
    5: ("ok_alarm", "binary", 1),
    6: ("iaq", "calibrated", 1),
    7: ("flooding", "binary", 1),
    8: ("pulse_cnt", "continuous", 1),
    9: ("electricity_meter", "continuous", 1),
    10: ("water_meter", "continuous", 1),
    11: ("soil_moisture", "continuous", 1),
    12: ("co_gas", "continuous", 1),
    13: ("no2_gas", "continuous", 1),
    14: ("h2s_gas", "continuous", 100),
    15: ("ambient_light", "continuous", 10),
    16: ("pm_1_0", "continuous", 1),
    17: ("pm_2_5", "continuous", 1),
    18: ("pm_10_0", "continuous", 1),
    19: ("noise_level", "continuous", 10),
    20: ("nh3_gas", "continuous", 1),
    21: ("ch4_gas", "continuous", 1),
    22: ("high_pressure", "continuous", 1),
    23: ("distance_mm", "continuous", 1),
    24: ("water_meter_acc_minor", "minor", 1),
    25: ("water_meter_acc_major", "major", 1),
    26: ("co2_gas", "calibrated", 1),
    27: ("humidity_accurate", "continuous", 10),
    28: ("static_iaq", "calibrated", 1),
    29: ("co2_equivalent", "calibrated", 1),
    30: ("breath_voc", "calibrated", 1),
    # 31 is reserved for Efento's shared-modem function: it carries no measurement.
    32: ("percentage", "continuous", 100),
    33: ("voltage", "continuous", 10),
    34: ("current", "continuous", 100),
    35: ("pulse_cnt_acc_minor", "minor", 1),
    36: ("pulse_cnt_acc_major", "major", 1),
    37: ("elec_meter_acc_minor", "minor", 1),
    38: ("elec_meter_acc_major", "major", 1),
    39: ("pulse_cnt_acc_wide_minor", "minor", 1),
    40: ("pulse_cnt_acc_wide_major", "major", 1),
    41: ("current_precise", "continuous", 1000),
    42: ("output_control", "binary", 1),
    43: ("resistance", "continuous", 1),
}
SHARED_MODEM_TYPE = 31

# Meter pairs: minor type -> (major type, total name, major multiplier, unit of the total).
# The total reading is major x multiplier + minor (625 hl and 20 l -> 62520 l).
METER_PAIRS = {
    24: (25, "water_meter_acc", 100, "l"),
    35: (36, "pulse_cnt_acc", 1000, "pulses"),
    37: (38, "elec_meter_acc", 1000, "Wh"),
    39: (40, "pulse_cnt_acc_wide", 1000000, "pulses"),
}

# battery_level mod 6: what powers the device.
POWER_SOURCES = {0: "battery", 1: "rechargeable_battery", 2: "external_power"}
# battery_level div 6 takes this value when the device has no voltage measurement.
NO_BATTERY_VOLTAGE = 10921

MODEM_TYPES = {0: "unspecified", 1: "bc66", 2: "bc66na", 3: "shared_modem", 4: "bc660"}
TAMPER_STATES = {0: "inactive", 1: "active", 2: "inactive_was_active"}

# ProtoConfig fields a device reports on path c: number -> (name, kind).
CONFIG_FIELDS = {
    2: ("measurement_period_base", "uint"),
    3: ("transmission_interval", "uint"),
    4: ("ble_turnoff_time", "uint"),
    5: ("ack_interval", "uint"),
    9: ("transfer_limit", "uint"),
    10: ("transfer_limit_timer", "uint"),
    11: ("data_server_ip", "string"),
    12: ("data_server_port", "uint"),
    13: ("update_server_ip", "string"),
    14: ("update_server_port_udp", "uint"),
    15: ("update_server_port_coap", "uint"),
    16: ("apn", "string"),
    17: ("plmn_selection", "uint"),
    20: ("configuration_errors", "uints"),
    23: ("cloud_token_config", "uint"),
    24: ("cloud_token", "string"),
    26: ("measurement_period_factor", "uint"),
    29: ("supervision_period", "uint"),
    31: ("modem_bands_mask", "uint"),
    32: ("data_endpoint", "string"),
    33: ("configuration_endpoint", "string"),
    34: ("device_info_endpoint", "string"),
    35: ("time_endpoint", "string"),
    36: ("ble_tx_power_level", "uint"),
    38: ("configuration_error_timestamp", "uint"),
    40: ("cloud_token_coap_option", "uint"),
    41: ("payload_signature_coap_option", "uint"),
    42: ("dns_server_ip", "uints"),
    43: ("dns_ttl_config", "uint"),
    51: ("network_troubleshooting", "uint"),
    52: ("modem_identification_coap_option", "uint"),
    55: ("apn_username", "string"),
    61: ("extended_configuration_endpoint", "string"),
    62: ("nvm_status", "uint"),
}
CONFIG_SERIAL_FIELD = 25
CONFIG_CHANNEL_TYPES_FIELD = 27
CONFIG_HASH_FIELD = 21
CONFIG_HASH_TIMESTAMP_FIELD = 39
CONFIG_SPLIT_FIELD = 44
CONFIG_RULES_FIELD = 28
CONFIG_CALENDARS_FIELD = 47

# What set_config may change, from Efento's ProtoConfig (proto_config.proto):
# name -> (field number, kind, lowest, highest, special values).
# kind: "uint" (varint), "bool", "string" (printable ASCII, lowest..highest characters;
# the special value "\x7f" (DEL) is Efento's "automatic" or "not used"), "octets" (a list
# of lowest..highest numbers 0..255, packed), "rules", "calendars" (lists of messages).
# Ranges are those Efento documents; special values lie outside them.
ALWAYS = UINT32_MAX
SETTABLE = {
    # periods and intervals
    "measurement_period_base": (2, "uint", 1, 65535, ()),
    "transmission_interval": (3, "uint", 60, 604800, ()),
    "ble_turnoff_time": (4, "uint", 60, 604800, (ALWAYS,)),  # UINT32_MAX: always on
    "ack_interval": (5, "uint", 180, 2592000, (ALWAYS,)),  # UINT32_MAX: always ACK
    "transfer_limit": (9, "uint", 1, 65535, ()),  # 65535: no limit
    "transfer_limit_timer": (10, "uint", 1, 65535, ()),  # 65535: no limit
    "measurement_period_factor": (26, "uint", 1, 65535, ()),
    "supervision_period": (29, "uint", 180, 604800, (ALWAYS,)),  # UINT32_MAX: disabled
    "ble_tx_power_level": (36, "uint", 1, 4, ()),
    # requests
    "device_info_request": (6, "bool", 0, 1, ()),
    "update_software_request": (7, "bool", 0, 1, ()),
    "current_time": (8, "uint", 1, UINT32_MAX, ()),
    "disable_modem_request": (18, "uint", 60, 604800, ()),
    "configuration_request": (19, "bool", 0, 1, ()),
    "accept_without_testing_request": (22, "bool", 0, 1, ()),
    "reset_memory_request": (30, "bool", 0, 1, ()),
    "clear_runtime_errors_request": (37, "bool", 0, 1, ()),
    "update_modem_request": (45, "string", 1, 48, ()),
    "extended_configuration_request": (63, "bool", 0, 1, ()),
    "restart_memory_stats_request": (64, "bool", 0, 1, ()),
    "data_transfer_start_timestamp_request": (65, "uint", 1, UINT32_MAX, ()),
    # servers and endpoints
    "data_server_ip": (11, "string", 1, 31, ()),
    "data_server_port": (12, "uint", 1, 65535, ()),
    "update_server_ip": (13, "string", 1, 31, ()),
    "update_server_port_udp": (14, "uint", 1, 65535, ()),
    "update_server_port_coap": (15, "uint", 1, 65535, ()),
    "data_endpoint": (32, "string", 1, 11, ()),
    "configuration_endpoint": (33, "string", 1, 11, ()),
    "device_info_endpoint": (34, "string", 1, 11, ()),
    "time_endpoint": (35, "string", 1, 11, ()),
    "extended_configuration_endpoint": (61, "string", 1, 11, ()),
    # cellular network
    "apn": (16, "string", 1, 49, ("\x7f",)),  # DEL: automatic APN
    "plmn_selection": (17, "uint", 100, 1000000, (ALWAYS,)),  # 1000000: automatic
    "modem_bands_mask": (31, "uint", 1, UINT32_MAX, ()),
    "dns_server_ip": (42, "octets", 1, 4, ()),  # [255, 255, 255, 255]: the network's DNS
    "dns_ttl_config": (43, "uint", 1, 864002, ()),
    "network_troubleshooting": (51, "uint", 1, 2, ()),  # 1 disabled, 2 enabled
    "apn_username": (55, "string", 1, 31, ("\x7f",)),  # DEL: no username
    "apn_password": (56, "string", 1, 31, ("\x7f",)),  # DEL: no password
    # cloud token and CoAP options
    "cloud_token_config": (23, "uint", 1, 2, (255,)),  # 1 cloud_token, 2 IMEI, 255 none
    "cloud_token": (24, "string", 1, 36, ()),
    "cloud_token_coap_option": (40, "uint", 1, 65000, ()),  # 65000: in the payload
    "payload_signature_coap_option": (41, "uint", 1, 65000, ()),  # 65000: not sent
    "modem_identification_coap_option": (52, "uint", 1, 65000, ()),  # 65000: not sent
    # edge logic
    "rules": (28, "rules", 0, 16, ()),
    "calendars": (47, "calendars", 0, 6, ()),
}
DEVICE_INFO_REQUEST_FIELD = 6
CONFIGURATION_REQUEST_FIELD = 19
SINT32_MIN = -2147483648
SINT32_MAX = 2147483647

# ProtoRule (proto_config_rule.proto): condition -> (number, how many parameters).
RULE_CONDITIONS = {
    "disabled": (1, (0,)),
    "high_threshold": (2, (5,)),
    "low_threshold": (3, (5,)),
    "diff_threshold": (4, (4,)),
    "binary_change_state": (5, (0,)),
    "logic_operator": (6, (5,)),
    "on_measurement": (7, (1, 2, 3)),
    "on_sensor_error": (8, (0,)),
}
RULE_ACTIONS = {
    "trigger_transmission": 1,
    "no_action": 2,
    "trigger_transmission_with_ack": 3,
    "fast_advertising_mode": 4,
}
RULE_CHANNELS = 6
RULE_COUNT = 16
# ProtoCalendar: type -> (number, how many parameters).
CALENDAR_TYPES = {"disabled": (1, (0,)), "week": (2, (4,))}

PATHS = {"m": "measurements", "i": "device info", "c": "configuration", "t": "time request"}


# --- wire-format helpers -----------------------------------------------------------------


def read_message(data, what):
    """Decode one protobuf message level into {field number: [(wire type, value), ...]}."""
    try:
        decoded = protowire.decode_fields(data)
    except protowire.WireError as exc:
        raise ValueError(f"malformed {what}: {exc}") from None
    fields = {}
    for number, wire_type, value in decoded:
        if number not in fields:
            fields[number] = []
        fields[number].append((wire_type, value))
    return fields


def describe(name, number, what):
    return f"{what}: {name} (field {number})"


def last_entry(fields, number, name, what, wire_type):
    """The last occurrence of a scalar field (protobuf: last one wins), type-checked."""
    entries = fields.get(number)
    if not entries:
        return None
    found_type, value = entries[-1]
    if found_type != wire_type:
        raise ValueError(
            f"{describe(name, number, what)} has wire type {WIRE_TYPES[found_type]}, "
            f"expected {WIRE_TYPES[wire_type]}"
        )
    return value


def uint32_field(fields, number, name, what):
    value = last_entry(fields, number, name, what, VARINT)
    if value is not None and value > UINT32_MAX:
        raise ValueError(f"{describe(name, number, what)} = {value} does not fit in a uint32")
    return value


def int32_field(fields, number, name, what):
    value = last_entry(fields, number, name, what, VARINT)
    if value is None:
        return None
    # A negative int32 is sent sign-extended to 64 bits: its top 33 bits are all ones.
    if value > UINT32_MAX and value >> 31 != 8589934591:
        raise ValueError(f"{describe(name, number, what)} = {value} does not fit in an int32")
    return protowire.to_int32(value)


def sint32_field(fields, number, name, what):
    value = last_entry(fields, number, name, what, VARINT)
    if value is None:
        return None
    if value > UINT32_MAX:
        raise ValueError(f"{describe(name, number, what)} = {value} does not fit in a sint32")
    return protowire.zigzag_decode(value)


def bool_field(fields, number, name, what):
    value = last_entry(fields, number, name, what, VARINT)
    if value is None:
        return None
    return value != 0


def bytes_field(fields, number, name, what):
    return last_entry(fields, number, name, what, LEN)


def string_field(fields, number, name, what):
    raw = last_entry(fields, number, name, what, LEN)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{describe(name, number, what)} is not valid UTF-8") from None


def repeated_uints(fields, number, name, what):
    """A repeated uint32 field, packed (one LEN field) or not (one varint per item)."""
    values = []
    for wire_type, value in fields.get(number, []):
        if wire_type == LEN:
            try:
                items = protowire.packed_varints(value)
            except protowire.WireError as exc:
                raise ValueError(f"{describe(name, number, what)} is malformed: {exc}") from None
        elif wire_type == VARINT:
            items = [value]
        else:
            raise ValueError(
                f"{describe(name, number, what)} has wire type {WIRE_TYPES[wire_type]}, "
                "expected 0 (varint) or 2 (length-delimited, packed)"
            )
        for item in items:
            if item > UINT32_MAX:
                raise ValueError(f"{describe(name, number, what)} holds {item}, over uint32")
            values.append(item)
    return values


def repeated_sints(fields, number, name, what):
    """A repeated sint32 field (zig-zag), packed or not."""
    values = []
    for item in repeated_uints(fields, number, name, what):
        values.append(protowire.zigzag_decode(item))
    return values


def serial_hex(raw, number, what):
    if len(raw) != 6:
        raise ValueError(
            f"{what}: serial_number (field {number}) is {len(raw)} bytes long, expected 6"
        )
    return raw.hex()


# --- identify ----------------------------------------------------------------------------


def message_path(metadata):
    """The Efento path of this contact ("m", "i", "c" or "t"); ValueError for others."""
    path = str(metadata.get("path") or "").strip("/")
    if path not in PATHS:
        raise ValueError(f"unknown Efento path {path!r}: expected one of m, i, c, t")
    return path


def find_serial(payload, path):
    """The serial number of a message as 12 lower-case hex digits, or None."""
    what = PATHS[path] + " message"
    if path == "t" and not payload:
        return None
    number = CONFIG_SERIAL_FIELD if path == "c" else 1
    raw = bytes_field(read_message(payload, what), number, "serial_number", what)
    if raw is None:
        return None
    return serial_hex(raw, number, what)


def identify(payload, metadata):
    """The device id: the serial number carried in the payload.

    A time request (path t) usually carries no serial: it then names no device (None),
    and is still answered with the time by reply().
    """
    path = message_path(metadata)
    if path == "t":
        # The body of a time request is not read: a device that sends one it cannot name
        # itself by (or an odd one) still gets the time.
        try:
            return find_serial(payload, path)
        except ValueError:
            return None
    serial = find_serial(payload, path)
    if serial is None:
        number = CONFIG_SERIAL_FIELD if path == "c" else 1
        raise ValueError(f"{PATHS[path]} message has no serial_number (field {number})")
    return serial


def token(payload, metadata):
    """The credential the device sends: its cloud_token (field 16 of measurements and
    device info messages), which the gateway checks as the device's token; or None."""
    path = message_path(metadata)
    if path not in ("m", "i"):
        return None
    what = PATHS[path] + " message"
    return string_field(read_message(payload, what), 16, "cloud_token", what) or None


# --- measurements (path m) ---------------------------------------------------------------


def decode_transfer_reason(reason):
    """transfer_reason bitmask -> its parts (bits 0-2 triggers, 3-7 retries, 8-19 rules)."""
    rules = []
    for bit in range(12):
        if (reason >> (8 + bit)) & 1:
            rules.append(bit + 1)
    return {
        "raw": reason,
        "first_after_reset": bool(reason & 1),
        "button": bool(reason & 2),
        "bluetooth": bool(reason & 4),
        "retries": (reason >> 3) & 31,
        "rules": rules,
        "limit_end": bool((reason >> 20) & 1),
        "pin_tamper": bool((reason >> 21) & 1),
        "enclosure_tamper": bool((reason >> 22) & 1),
        "before_shutdown": bool((reason >> 23) & 1),
    }


def split_raw(raw, factor):
    """Efento's "value with metadata" types: (sign x (|raw| div factor), |raw| mod factor)."""
    magnitude = abs(raw)
    value = magnitude // factor
    if raw < 0:
        value = -value
    return value, magnitude % factor


def continuous_sample(sample, kind, divisor, raw):
    """Fill in the value of a continuous-type sample from its raw integer."""
    if kind == "calibrated":
        value, state = split_raw(raw, 3)
        sample["value"] = value
        sample["calibration_status"] = state
    elif kind == "major":
        value, status = split_raw(raw, 4)
        sample["value"] = value
        sample["meter_status"] = status
    elif kind == "minor":
        value, index = split_raw(raw, 6)
        sample["value"] = value
        sample["major_channel"] = index + 1  # the index counts channels from 0
    elif divisor == 1:
        sample["value"] = raw
    else:
        sample["value"] = raw / divisor
    return sample


def decode_channel(number, channel, period):
    """The samples of one decoded channel message, as measurement dicts."""
    what = f"channel {number}"
    name, kind, divisor = MEASUREMENT_TYPES[channel["type"]]
    fields = channel["fields"]
    offsets = repeated_sints(fields, 5, "sample_offsets", what)
    if not offsets:
        return []
    timestamp = int32_field(fields, 2, "timestamp", what)
    if not timestamp:
        raise ValueError(f"{what} ({name}) has samples but no timestamp (field 2)")
    samples = []
    if kind == "binary":
        # Each offset is a state change at timestamp + |offset| - 1; the sign is the state.
        for offset in offsets:
            if offset == 0:
                raise ValueError(f"{what} ({name}) has a sample offset of 0, which has no state")
            samples.append(
                {
                    "channel": number,
                    "type": name,
                    "timestamp": timestamp + abs(offset) - 1,
                    "value": offset > 0,
                }
            )
        return samples
    if period <= 0 and len(offsets) > 1:
        raise ValueError(
            f"{what} ({name}) has {len(offsets)} samples but the message gives no "
            "measurement_period_base (field 3) to time them"
        )
    start = sint32_field(fields, 4, "start_point", what) or 0
    for index, offset in enumerate(offsets):
        sample = {"channel": number, "type": name, "timestamp": timestamp + index * period}
        if SENSOR_ERROR_LOW <= offset <= SENSOR_ERROR_HIGH:
            # A sensor error: the offset is the error code; start_point is not added.
            sample["error_code"] = offset
        else:
            continuous_sample(sample, kind, divisor, start + offset)
        samples.append(sample)
    return samples


def meter_totals(channels):
    """Combine each meter minor channel with its major channel into total readings.

    A minor sample names its major channel by index (raw mod 6: 0..5 for channels 1..6).
    When that channel is not the matching major type but the message holds exactly one,
    that one is used, with a warning; otherwise no total is given.
    """
    totals = []
    for minor in channels:
        pair = METER_PAIRS.get(minor["type"])
        if pair is None:
            continue
        major_type, total_name, multiplier, unit = pair
        minor_name = MEASUREMENT_TYPES[minor["type"]][0]
        major_name = MEASUREMENT_TYPES[major_type][0]
        majors = [c for c in channels if c["type"] == major_type]
        pointed = None
        for sample in minor["samples"]:
            if "major_channel" in sample:
                pointed = sample["major_channel"]
                break
        if pointed is None:
            continue
        chosen = [c for c in majors if c["number"] == pointed]
        if chosen:
            major = chosen[0]
        elif len(majors) == 1:
            major = majors[0]
            warn(
                f"channel {minor['number']} ({minor_name}) names channel {pointed} as its "
                f"major channel, which is not a {major_name}; paired with channel "
                f"{major['number']}, the only {major_name} of the message"
            )
        else:
            warn(
                f"channel {minor['number']} ({minor_name}) names channel {pointed} as its "
                f"major channel, which is not a {major_name}; no total computed"
            )
            continue
        major_values = {}
        for sample in major["samples"]:
            if "value" in sample:
                major_values[sample["timestamp"]] = sample["value"]
        for sample in minor["samples"]:
            if "value" not in sample or sample["timestamp"] not in major_values:
                continue
            totals.append(
                {
                    "type": total_name,
                    "channel": major["number"],
                    "minor_channel": minor["number"],
                    "timestamp": sample["timestamp"],
                    "value": major_values[sample["timestamp"]] * multiplier + sample["value"],
                    "unit": unit,
                }
            )
    return totals


def parse_measurements(payload, metadata):
    what = "measurements message"
    fields = read_message(payload, what)
    raw_serial = bytes_field(fields, 1, "serial_number", what)
    if raw_serial is None:
        raise ValueError("measurements message has no serial_number (field 1)")
    data = {
        "message": "measurements",
        "serial_number": serial_hex(raw_serial, 1, what),
        # battery_status is a proto3 bool: absent means false (battery discharged).
        "battery_ok": bool(bool_field(fields, 2, "battery_status", what)),
    }

    level = uint32_field(fields, 18, "battery_level", what)
    if level is not None:
        if level // 6 < NO_BATTERY_VOLTAGE:
            data["battery_voltage"] = (level // 6) / 100
        data["power_source"] = POWER_SOURCES.get(level % 6, f"reserved_{level % 6}")

    # Channels: one per repeated field 4, numbered by position from 1.
    channels = []
    has_binary = False
    for index, entry in enumerate(fields.get(4, [])):
        number = index + 1
        wire_type, body = entry
        if wire_type != LEN:
            raise ValueError(
                f"{what}: channel {number} (field 4) has wire type {WIRE_TYPES[wire_type]}, "
                "expected 2 (length-delimited)"
            )
        channel_fields = read_message(body, f"channel {number}")
        type_number = uint32_field(channel_fields, 1, "type", f"channel {number}") or 0
        if type_number == 0:
            continue  # no sensor on this channel
        if type_number not in MEASUREMENT_TYPES:
            if type_number != SHARED_MODEM_TYPE:
                warn(f"channel {number} has unknown measurement type {type_number}: skipped")
            continue
        if MEASUREMENT_TYPES[type_number][1] == "binary":
            has_binary = True
        channels.append({"number": number, "type": type_number, "fields": channel_fields})

    # Measurement period = base x factor; factor 0 (old firmware) means 1, or 14 on
    # devices with binary channels.
    base = uint32_field(fields, 3, "measurement_period_base", what) or 0
    factor = uint32_field(fields, 8, "measurement_period_factor", what) or 0
    if factor == 0:
        factor = 14 if has_binary else 1
    period = base * factor
    data["measurement_period_base"] = base
    data["measurement_period_factor"] = factor
    data["measurement_period"] = period

    measurements = []
    for channel in channels:
        channel["samples"] = decode_channel(channel["number"], channel, period)
        measurements.extend(channel["samples"])
    data["measurements"] = measurements
    totals = meter_totals(channels)
    if totals:
        data["meter_totals"] = totals

    next_at = uint32_field(fields, 5, "next_transmission_at", what)
    if next_at is not None:
        data["next_transmission_at"] = next_at
    reason = uint32_field(fields, 6, "transfer_reason", what)
    if reason is not None:
        data["transfer_reason"] = decode_transfer_reason(reason)
    signal = uint32_field(fields, 7, "signal", what)
    if signal is not None:
        data["signal"] = signal  # deprecated: 0..63 RSSI steps, 99 unknown
    config_hash = uint32_field(fields, 9, "configuration_hash", what)
    if config_hash is not None:
        data["configuration_hash"] = config_hash
    # cloud_token (field 16) is read by token(), not copied: it may be the device's
    # credential, which no record may carry. Reading it here still checks its type.
    string_field(fields, 16, "cloud_token", what)
    extended_hash = uint32_field(fields, 17, "extended_configuration_hash", what)
    if extended_hash is not None:
        data["extended_configuration_hash"] = extended_hash

    device_id = metadata.get("device_id")
    if device_id and device_id != data["serial_number"]:
        warn(f"device id {device_id} differs from the serial number {data['serial_number']}")
    return data


# --- device info (path i) ----------------------------------------------------------------


def software_version(raw):
    """sw_version 1546 = 0x060A -> "06.10"."""
    return f"{raw >> 8:02d}.{raw & 255:02d}"


def parse_runtime(body):
    what = "device info runtime_info"
    fields = read_message(body, what)
    out = {}
    up_time = uint32_field(fields, 1, "up_time", what)
    if up_time is not None:
        out["up_time"] = up_time
    counters = repeated_uints(fields, 2, "message_counters", what)
    if len(counters) >= 3:
        out["message_counters"] = {
            "confirmable_attempts": counters[0],
            "non_confirmable_attempts": counters[1],
            "successful": counters[2],
        }
    temperatures = ((3, "mcu_temperature"), (7, "max_mcu_temperature"), (8, "min_mcu_temperature"))
    for number, name in temperatures:
        value = sint32_field(fields, number, name, what)
        if value is not None:
            out[name] = value  # degC
    millivolts = uint32_field(fields, 4, "battery_voltage", what)
    if millivolts is not None and millivolts != 65535:  # 65535: no measurement
        out["battery_voltage"] = millivolts / 1000
    errors = repeated_uints(fields, 9, "runtime_errors", what)
    out["runtime_errors"] = errors
    resets = uint32_field(fields, 10, "reset_counter", what)
    if resets is not None:
        out["reset_counter"] = resets
    return out


def parse_modem(body):
    what = "device info modem"
    fields = read_message(body, what)
    out = {}
    modem_type = uint32_field(fields, 1, "type", what)
    if modem_type is not None:
        out["type"] = MODEM_TYPES.get(modem_type, f"unknown_{modem_type}")
    parameters = repeated_sints(fields, 2, "parameters", what)
    if parameters:
        out["parameters"] = parameters
    iccid = string_field(fields, 3, "sim_card_identification", what)
    if iccid is not None:
        out["sim_card_identification"] = None if iccid == "\x7f" else iccid  # DEL: no SIM
    firmware = uint32_field(fields, 4, "firmware_version", what)
    if firmware is not None:
        out["firmware_version"] = firmware
    identification = string_field(fields, 5, "modem_identification", what)
    if identification is not None:
        out["identification"] = identification
    statistics = repeated_uints(fields, 6, "modem_statistics", what)
    if statistics:
        out["statistics"] = statistics
    return out


def parse_device_info(payload, metadata):
    what = "device info message"
    fields = read_message(payload, what)
    raw_serial = bytes_field(fields, 1, "serial_number", what)
    if raw_serial is None:
        raise ValueError("device info message has no serial_number (field 1)")
    data = {"message": "device_info", "serial_number": serial_hex(raw_serial, 1, what)}
    version = uint32_field(fields, 3, "sw_version", what)
    if version is not None:
        data["software_version"] = software_version(version)
    commit = string_field(fields, 15, "commit_id", what)
    if commit is not None:
        data["commit_id"] = commit
    runtime = bytes_field(fields, 13, "runtime_info", what)
    if runtime is not None:
        data.update(parse_runtime(runtime))
    modem = bytes_field(fields, 14, "modem", what)
    if modem is not None:
        data["modem"] = parse_modem(modem)
    string_field(fields, 16, "cloud_token", what)  # token()'s, never recorded
    memory = repeated_uints(fields, 17, "memory_statistics", what)
    if memory:
        data["memory_statistics"] = memory
    update = bytes_field(fields, 18, "last_update_info", what)
    if update is not None:
        update_fields = read_message(update, "device info last_update_info")
        data["last_update"] = {
            "timestamp": uint32_field(update_fields, 1, "timestamp", "last_update_info") or 0,
            "status": uint32_field(update_fields, 2, "status", "last_update_info") or 0,
        }
    tamper = uint32_field(fields, 19, "enclosure_tamper_alert", what)
    if tamper is not None:
        data["enclosure_tamper_alert"] = TAMPER_STATES.get(tamper, f"unknown_{tamper}")
    return data


# --- configuration (path c) --------------------------------------------------------------


def payload_part(split_info):
    """payload_split_info (field 44) as {"index", "count", "last"}.

    A device that cannot fit its configuration in one message sends it in parts, one
    contact each: a negative value is part |value| with more to come (the count is not
    known yet), a positive one the last part, whose number is the count; 0 (or absent)
    means one whole message. Each part is parsed, and recorded, on its own.
    """
    if not split_info:
        return {"index": 1, "count": 1, "last": True}
    if split_info < 0:
        return {"index": -split_info, "count": None, "last": False}
    return {"index": split_info, "count": split_info, "last": True}


def decode_rules(fields, what):
    """The edge-logic rules (field 28) as {"channels", "condition", "parameters", "action"}."""
    conditions = {spec[0]: name for name, spec in RULE_CONDITIONS.items()}
    conditions[0] = "unspecified"
    actions = {number: name for name, number in RULE_ACTIONS.items()}
    actions[0] = "unspecified"
    rules = []
    for index, entry in enumerate(fields.get(CONFIG_RULES_FIELD, [])):
        name = f"{what} rule {index + 1}"
        if entry[0] != LEN:
            raise ValueError(f"{name} (field 28) has wire type {WIRE_TYPES[entry[0]]}")
        rule = read_message(entry[1], name)
        mask = uint32_field(rule, 1, "channel_mask", name) or 0
        condition = uint32_field(rule, 2, "condition", name) or 0
        action = uint32_field(rule, 4, "action", name) or 0
        rules.append(
            {
                "channels": [bit + 1 for bit in range(32) if (mask >> bit) & 1],
                "condition": conditions.get(condition, f"unknown_{condition}"),
                "parameters": repeated_sints(rule, 3, "parameters", name),
                "action": actions.get(action, f"unknown_{action}"),
            }
        )
    return rules


def decode_calendars(fields, what):
    """The rule calendars (field 47) as {"rules", "type", "parameters"}."""
    types = {spec[0]: name for name, spec in CALENDAR_TYPES.items()}
    types[0] = "unspecified"
    calendars = []
    for index, entry in enumerate(fields.get(CONFIG_CALENDARS_FIELD, [])):
        name = f"{what} calendar {index + 1}"
        if entry[0] != LEN:
            raise ValueError(f"{name} (field 47) has wire type {WIRE_TYPES[entry[0]]}")
        calendar = read_message(entry[1], name)
        mask = uint32_field(calendar, 1, "rule_mask", name) or 0
        kind = uint32_field(calendar, 3, "type", name) or 0
        calendars.append(
            {
                "rules": [bit + 1 for bit in range(32) if (mask >> bit) & 1],
                "type": types.get(kind, f"unknown_{kind}"),
                "parameters": repeated_sints(calendar, 2, "parameters", name),
            }
        )
    return calendars


def parse_configuration(payload, metadata):
    what = "configuration message"
    fields = read_message(payload, what)
    raw_serial = bytes_field(fields, CONFIG_SERIAL_FIELD, "serial_number", what)
    if raw_serial is None:
        raise ValueError(
            f"configuration message has no serial_number (field {CONFIG_SERIAL_FIELD})"
        )
    split = sint32_field(fields, CONFIG_SPLIT_FIELD, "payload_split_info", what)
    data = {
        "message": "configuration",
        "serial_number": serial_hex(raw_serial, CONFIG_SERIAL_FIELD, what),
        "part": payload_part(split),
        # Always present, so that "no errors" and "not sent in this part" are explicit.
        "configuration_errors": repeated_uints(fields, 20, "configuration_errors", what),
        "configuration_hash": uint32_field(fields, CONFIG_HASH_FIELD, "configuration_hash", what),
        "configuration_hash_timestamp": uint32_field(
            fields, CONFIG_HASH_TIMESTAMP_FIELD, "configuration_hash_timestamp", what
        ),
    }
    for number, spec in CONFIG_FIELDS.items():
        name, kind = spec
        if number not in fields or name in data:
            continue
        if kind == "uint":
            data[name] = uint32_field(fields, number, name, what)
        elif kind == "sint":
            data[name] = sint32_field(fields, number, name, what)
        elif kind == "string":
            data[name] = string_field(fields, number, name, what)
        else:
            data[name] = repeated_uints(fields, number, name, what)
    types = repeated_uints(fields, CONFIG_CHANNEL_TYPES_FIELD, "channel_types", what)
    if types:
        names = []
        for type_number in types:
            if type_number == 0:
                names.append("no_sensor")
            elif type_number in MEASUREMENT_TYPES:
                names.append(MEASUREMENT_TYPES[type_number][0])
            else:
                names.append(f"unknown_{type_number}")
        data["channel_types"] = names
    rules = decode_rules(fields, what)
    if rules:
        data["rules"] = rules
    calendars = decode_calendars(fields, what)
    if calendars:
        data["calendars"] = calendars
    return data


# --- entry points ------------------------------------------------------------------------


def parse(payload, metadata):
    """Decode one Efento message; the path says which."""
    path = message_path(metadata)
    if path == "m":
        return parse_measurements(payload, metadata)
    if path == "i":
        return parse_device_info(payload, metadata)
    if path == "c":
        return parse_configuration(payload, metadata)
    return {"message": "time_request", "time_request": True, "current_time": served_time(metadata)}


def served_time(metadata):
    """The time a time request is answered with: when the gateway received it."""
    now = metadata.get("received_at")
    if not isinstance(now, int) or isinstance(now, bool) or not 0 < now <= UINT32_MAX:
        now = int(datetime.datetime.now(datetime.UTC).timestamp())
    return now


def reply(payload, metadata):
    """Answer a time request (GET or POST on the time endpoint) with the current Unix
    time, 4 bytes big-endian, as Efento's devices read it."""
    if str(metadata.get("path") or "").strip("/") != "t":
        return None
    return struct.pack(">I", served_time(metadata))


# --- commands ----------------------------------------------------------------------------


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_uint(name, value, low, high, special):
    if not is_int(value):
        raise ValueError(f"set_config: {name} must be an integer, not {value!r}")
    if not (low <= value <= high or value in special):
        extra = "" if not special else f" (or {', '.join(str(v) for v in special)})"
        raise ValueError(f"set_config: {name} = {value} is out of range [{low}, {high}]{extra}")
    return value


def check_string(name, value, low, high, special):
    if not isinstance(value, str):
        raise ValueError(f"set_config: {name} must be a string, not {value!r}")
    if value in special:
        return value
    if not low <= len(value) <= high or not value.isascii() or not value.isprintable():
        extra = ' (or "\\x7f")' if special else ""
        raise ValueError(
            f"set_config: {name} must be {low} to {high} printable ASCII characters{extra}"
        )
    return value


def check_int_list(name, value, low, high, count_low, count_high):
    if not isinstance(value, list) or not all(is_int(item) for item in value):
        raise ValueError(f"set_config: {name} must be a list of integers, not {value!r}")
    if not count_low <= len(value) <= count_high:
        raise ValueError(
            f"set_config: {name} holds {len(value)} numbers, expected {count_low} to {count_high}"
        )
    for item in value:
        if not low <= item <= high:
            raise ValueError(f"set_config: {name} holds {item}, out of range [{low}, {high}]")
    return value


def enum_number(name, value, names):
    """An enum given by name (as in the tables above) or by its number."""
    numbers = {}
    for key, spec in names.items():
        numbers[key] = spec if is_int(spec) else spec[0]
    if isinstance(value, str) and value in numbers:
        return numbers[value]
    if is_int(value) and value in numbers.values():
        return value
    raise ValueError(f"set_config: {name} must be one of {', '.join(names)}, not {value!r}")


def parameter_counts(table, number):
    """How many parameters the condition or calendar type `number` of `table` takes."""
    for spec in table.values():
        if spec[0] == number:
            return spec[1]
    raise ValueError(f"set_config: no parameter counts for {number}")


def check_keys(name, item, allowed, required):
    if not isinstance(item, dict):
        raise ValueError(f"set_config: {name} must be an object, not {item!r}")
    unknown = sorted(key for key in item if key not in allowed)
    if unknown:
        raise ValueError(
            f"set_config: {name} has unknown keys {', '.join(unknown)}; known: {', '.join(allowed)}"
        )
    missing = [key for key in required if key not in item]
    if missing:
        raise ValueError(f"set_config: {name} needs {', '.join(missing)}")


def channel_mask(name, item):
    """A rule's channels: `channels` (numbers from 1) or `channel_mask` (bit 0 = channel 1)."""
    if "channels" in item and "channel_mask" in item:
        raise ValueError(f"set_config: {name} gives both channels and channel_mask")
    if "channel_mask" in item:
        limit = (1 << RULE_CHANNELS) - 1
        return check_uint(f"{name}.channel_mask", item["channel_mask"], 0, limit, ())
    channels = check_int_list(
        f"{name}.channels", item.get("channels", []), 1, RULE_CHANNELS, 0, RULE_CHANNELS
    )
    mask = 0
    for number in channels:
        mask |= 1 << (number - 1)
    return mask


def checked_parameters(name, item, counts):
    parameters = check_int_list(
        f"{name}.parameters", item.get("parameters", []), SINT32_MIN, SINT32_MAX, 0, 16
    )
    if len(parameters) not in counts:
        expected = " or ".join(str(count) for count in counts)
        raise ValueError(f"set_config: {name} takes {expected} parameters, got {len(parameters)}")
    return parameters


def message_fields(fields):
    """A nested message's fields without proto3 defaults (0, empty), as protobuf writes it."""
    kept = []
    for number, kind, value in fields:
        if value:
            kept.append((number, kind, value))
    return protowire.encode(kept)


def encode_rule(index, item):
    """One ProtoRule: channel_mask 1, condition 2, parameters 3 (packed sint32), action 4."""
    name = f"rules[{index}]"
    check_keys(
        name,
        item,
        ("channels", "channel_mask", "condition", "parameters", "action"),
        ("condition",),
    )
    condition = enum_number(f"{name}.condition", item["condition"], RULE_CONDITIONS)
    counts = parameter_counts(RULE_CONDITIONS, condition)
    action = 0
    if "action" in item:
        action = enum_number(f"{name}.action", item["action"], RULE_ACTIONS)
    return message_fields(
        [
            (1, "varint", channel_mask(name, item)),
            (2, "varint", condition),
            (3, "packed_sint", checked_parameters(name, item, counts)),
            (4, "varint", action),
        ]
    )


def encode_calendar(index, item):
    """One ProtoCalendar: rule_mask 1, parameters 2 (packed sint32), type 3."""
    name = f"calendars[{index}]"
    check_keys(name, item, ("rules", "rule_mask", "type", "parameters"), ("type",))
    if "rules" in item and "rule_mask" in item:
        raise ValueError(f"set_config: {name} gives both rules and rule_mask")
    if "rule_mask" in item:
        mask = check_uint(f"{name}.rule_mask", item["rule_mask"], 0, (1 << RULE_COUNT) - 1, ())
    else:
        rules = check_int_list(f"{name}.rules", item.get("rules", []), 1, RULE_COUNT, 0, RULE_COUNT)
        mask = 0
        for number in rules:
            mask |= 1 << (number - 1)
    kind = enum_number(f"{name}.type", item["type"], CALENDAR_TYPES)
    counts = parameter_counts(CALENDAR_TYPES, kind)
    return message_fields(
        [
            (1, "varint", mask),
            (2, "packed_sint", checked_parameters(name, item, counts)),
            (3, "varint", kind),
        ]
    )


def encode_param(name, value):
    """One set_config parameter as the (field number, protowire kind, value) triples it
    becomes, in order; proto3 defaults (false) are left out, as protobuf does."""
    spec = SETTABLE.get(name)
    if spec is None:
        known = ", ".join(sorted(SETTABLE))
        raise ValueError(f"set_config: unknown parameter {name!r}; known: {known}")
    number, kind, low, high, special = spec
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"set_config: {name} must be true or false, not {value!r}")
        return [(number, "bool", True)] if value else []
    if kind == "string":
        return [(number, "string", check_string(name, value, low, high, special))]
    if kind == "octets":
        return [(number, "packed_varint", check_int_list(name, value, 0, 255, low, high))]
    if kind in ("rules", "calendars"):
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise ValueError(f"set_config: {name} must be a list of at most {high} objects")
        encode = encode_rule if kind == "rules" else encode_calendar
        return [(number, "message", encode(i, item)) for i, item in enumerate(value)]
    return [(number, "varint", check_uint(name, value, low, high, special))]


def command_params(command):
    params = command.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError("command params must be an object")
    return params


def encode_config(params):
    """A ProtoConfig with the given settings, fields in field-number order."""
    fields = []
    for name in sorted(params, key=lambda key: SETTABLE.get(key, (0,))[0]):
        fields.extend(encode_param(name, params[name]))
    if not fields:
        raise ValueError("set_config: every value given is false or empty: nothing to send")
    return protowire.encode(fields)


def format_command(command):
    """Encode a command as the ProtoConfig downlink the device reads from the ACK."""
    name = command.get("command")
    params = command_params(command)
    if name == "set_config":
        if not params:
            raise ValueError("set_config needs at least one parameter")
        return encode_config(params)
    if name in ("request_device_info", "request_configuration"):
        if params:
            raise ValueError(f"{name} takes no parameters, got {', '.join(sorted(params))}")
        number = DEVICE_INFO_REQUEST_FIELD
        if name == "request_configuration":
            number = CONFIGURATION_REQUEST_FIELD
        return protowire.encode([(number, "bool", True)])
    raise ValueError(
        f"unknown command {name!r}: expected set_config, request_device_info "
        "or request_configuration"
    )
