"""nexo Retailer messages as plain values: what tilld sends and what it reads.

Only the elements and attributes the driver uses are modelled; codec.py turns
these into the XML that Swedbank Pay's PAX terminals take (nexo 3.1) and
back. Amounts are integer öre here and decimal kronor ("38.50") on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .errors import NexoProtocolError

PROTOCOL_VERSION = "3.1"
CATEGORIES = (
    "Login",
    "Logout",
    "Payment",
    "Abort",
    "TransactionStatus",
    "Reversal",
    "Reconciliation",
    "Diagnosis",
)
RESULTS = ("Success", "Failure", "Partial")
# The nexo ErrorCondition values a terminal may answer with.
ERROR_CONDITIONS = (
    "Aborted",
    "Busy",
    "Cancel",
    "DeviceOut",
    "InProgress",
    "InsertedCard",
    "InvalidCard",
    "LoggedOut",
    "MessageFormat",
    "NotAllowed",
    "NotFound",
    "PaymentRestriction",
    "Refusal",
    "UnavailableDevice",
    "UnavailableService",
    "UnreachableHost",
    "WrongPIN",
)
PAYMENT_TYPES = ("Normal", "Refund")
RECONCILIATION_TYPES = ("SaleReconciliation", "AcquirerSynchronisation", "AcquirerReconciliation")
MAX_AMOUNT_ORE = 10**11  # a billion kronor: past any till's sale, inside every terminal's field


def format_amount(ore: int) -> str:
    """1234 öre -> "12.34" (nexo's decimal amount, '.' as separator)."""
    if not 0 <= ore <= MAX_AMOUNT_ORE:
        raise ValueError(f"amount {ore} öre is outside 0..{MAX_AMOUNT_ORE}")
    return f"{ore // 100}.{ore % 100:02d}"


def parse_amount(text: str, what: str = "amount") -> int:
    """ "38", "38.5" or "38.50" kronor -> öre; more than two decimals is an error."""
    if not (0 < len(text) <= 20) or not all(c.isdigit() or c == "." for c in text):
        raise NexoProtocolError(f"{what} {text[:24]!r} is not a decimal amount")
    try:
        value = Decimal(text) * 100
    except InvalidOperation:
        raise NexoProtocolError(f"{what} {text[:24]!r} is not a decimal amount") from None
    if value != value.to_integral_value() or value > MAX_AMOUNT_ORE:
        raise NexoProtocolError(f"{what} {text!r} has more than two decimals or is too large")
    return int(value)


@dataclass(frozen=True)
class Header:
    category: str
    type: str  # "Request" | "Response"
    service_id: str
    sale_id: str
    poi_id: str


@dataclass(frozen=True)
class Result:
    result: str = "Success"
    error_condition: str | None = None
    additional: str | None = None  # AdditionalResponse: free text from the terminal

    @property
    def ok(self) -> bool:
        return self.result == "Success"


@dataclass(frozen=True)
class LoginRequest:
    date_time: str  # ISO 8601 with offset
    provider: str
    application: str
    version: str
    language: str = "sv"
    capabilities: tuple[str, ...] = ("PrinterReceipt",)


@dataclass(frozen=True)
class LoginResponse:
    response: Result
    poi_serial: str = ""
    poi_software: str = ""
    global_status: str = ""


@dataclass(frozen=True)
class PaymentRequest:
    transaction_id: str  # the till's own id for the payment
    timestamp: str
    amount: int  # öre
    currency: str = "SEK"
    payment_type: str = "Normal"


@dataclass(frozen=True)
class PaymentResponse:
    response: Result
    transaction_id: str = ""
    timestamp: str = ""
    poi_transaction_id: str = ""  # the terminal's id: a reversal names it
    poi_timestamp: str = ""
    payment_type: str = "Normal"
    payment_brand: str = ""  # "01,Mastercard Debit"
    masked_pan: str = ""
    entry_mode: str = ""
    authorized_amount: int | None = None  # öre
    currency: str = "SEK"
    approval_code: str = ""
    online: bool | None = None  # PaymentResult OnlineFlag; None: the terminal did not say
    customer_receipt: tuple[str, ...] = ()
    cashier_receipt: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReversalRequest:
    poi_transaction_id: str
    poi_timestamp: str
    reason: str = "MerchantCancel"  # or "Malfunction" when software decides


@dataclass(frozen=True)
class ReversalResponse:
    response: Result
    poi_transaction_id: str = ""
    poi_timestamp: str = ""
    reversed_amount: int | None = None  # öre
    customer_receipt: tuple[str, ...] = ()


@dataclass(frozen=True)
class AbortRequest:
    service_id: str  # of the request to abort
    category: str = "Payment"
    reason: str = "Cancelled by the cashier"


@dataclass(frozen=True)
class TransactionStatusRequest:
    service_id: str | None = None  # None: the last transaction
    category: str = "Payment"


@dataclass(frozen=True)
class TransactionStatusResponse:
    response: Result
    repeated: Message | None = None  # the found response, with its own header


@dataclass(frozen=True)
class ReconciliationRequest:
    reconciliation_type: str = "SaleReconciliation"


@dataclass(frozen=True)
class Totals:
    count: int
    amount: int  # öre


@dataclass(frozen=True)
class ReconciliationResponse:
    response: Result
    reconciliation_type: str = "SaleReconciliation"
    totals: tuple[Totals, ...] = ()


@dataclass(frozen=True)
class DiagnosisRequest:
    pass


@dataclass(frozen=True)
class DiagnosisResponse:
    response: Result
    global_status: str = ""


Body = (
    LoginRequest
    | LoginResponse
    | PaymentRequest
    | PaymentResponse
    | ReversalRequest
    | ReversalResponse
    | AbortRequest
    | TransactionStatusRequest
    | TransactionStatusResponse
    | ReconciliationRequest
    | ReconciliationResponse
    | DiagnosisRequest
    | DiagnosisResponse
)

# Body class -> (MessageCategory, XML element name, is a response).
KINDS: dict[type, tuple[str, str, bool]] = {
    LoginRequest: ("Login", "LoginRequest", False),
    LoginResponse: ("Login", "LoginResponse", True),
    PaymentRequest: ("Payment", "PaymentRequest", False),
    PaymentResponse: ("Payment", "PaymentResponse", True),
    ReversalRequest: ("Reversal", "ReversalRequest", False),
    ReversalResponse: ("Reversal", "ReversalResponse", True),
    AbortRequest: ("Abort", "AbortRequest", False),
    TransactionStatusRequest: ("TransactionStatus", "TransactionStatusRequest", False),
    TransactionStatusResponse: ("TransactionStatus", "TransactionStatusResponse", True),
    ReconciliationRequest: ("Reconciliation", "ReconciliationRequest", False),
    ReconciliationResponse: ("Reconciliation", "ReconciliationResponse", True),
    DiagnosisRequest: ("Diagnosis", "DiagnosisRequest", False),
    DiagnosisResponse: ("Diagnosis", "DiagnosisResponse", True),
}
BY_ELEMENT = {element: cls for cls, (_, element, _) in KINDS.items()}


@dataclass(frozen=True)
class Message:
    header: Header
    body: Body = field(default_factory=DiagnosisRequest)


def message(body: Body, service_id: str, sale_id: str, poi_id: str) -> Message:
    """`body` with the header its kind needs."""
    category, _, response = KINDS[type(body)]
    kind = "Response" if response else "Request"
    return Message(Header(category, kind, service_id, sale_id, poi_id), body)
