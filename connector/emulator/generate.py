"""Deterministic bulk content for a scenario's `generate:` block.

`generate(state, spec)` adds `spec.users` generated users, then gives every target mailbox
`spec.messages` messages (threads with In-Reply-To/References, Outlook-style HTML bodies with
signatures and quoted history, internal and external senders, Sent Items copies), and hands
generated events, contacts and To Do tasks to the calendar, contacts and todo modules' `seed`.

One seed gives byte-identical content and ids: every section draws from its own
`random.Random` keyed by (seed, mailbox, section), and dates count back from a fixed anchor
(midnight UTC of the build day unless the caller passes `now`).
"""

from __future__ import annotations

import gc
import importlib
import logging
import random
import string
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from . import mail
from .http import iso, utcnow
from .scenario import GenerateSpec, TodoListSpec, TodoSpec, UserSpec
from .state import EmulatorState
from .store import Mailbox, b64url, stable_bytes

log = logging.getLogger("connector.emulator.generate")
T = TypeVar("T")

GIVEN_NAMES = (
    "Aaron", "Abigail", "Adrian", "Aisha", "Alan", "Alicia", "Amir", "Ana", "Andrea", "Anil", "Ben", "Bianca",
    "Carlos", "Chen", "Chloe", "Daniel", "Deepa", "Diego", "Elena", "Emeka", "Emma", "Ethan", "Fatima", "Felix",
    "Gabriel", "Grace", "Hannah", "Hiro", "Ines", "Isaac", "Jamal", "Jana", "Javier", "Julia", "Kai", "Karin",
    "Lars", "Laura", "Leila", "Lucas", "Maya", "Mei", "Miguel", "Nadia", "Noah", "Olivia", "Omar", "Priya",
    "Rafael", "Rosa", "Samir", "Sara", "Sofia", "Tariq", "Thomas", "Valentina", "Victor", "Wei", "Yuki", "Zoe",
)
SURNAMES = (
    "Abbott", "Adeyemi", "Alvarez", "Andersen", "Bauer", "Becker", "Brooks", "Castillo", "Chandra", "Costa",
    "Dubois", "Edwards", "Eriksson", "Fischer", "Fernandes", "Garcia", "Goldberg", "Haddad", "Hansen", "Ito",
    "Jensen", "Kapoor", "Keller", "Kim", "Kowalski", "Larsen", "Lopez", "Martin", "Meyer", "Moreau", "Nakamura",
    "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Quinn", "Rossi", "Santos", "Schmidt", "Silva",
    "Singh", "Sato", "Tanaka", "Torres", "Vargas", "Wagner", "Walsh", "Weber", "Yamamoto", "Zhang",
)
DEPARTMENTS = ("Sales", "Marketing", "Finance", "Operations", "Engineering", "Customer Success", "Legal", "HR", "IT")
JOB_TITLES = (
    "Account Executive", "Sales Manager", "Marketing Specialist", "Financial Analyst", "Operations Lead",
    "Software Engineer", "Customer Success Manager", "Legal Counsel", "HR Business Partner", "IT Administrator",
    "Project Manager", "Product Manager", "Solutions Architect",
)
# External organisations; the first five match account domains in the demo CRM.
CRM_DOMAINS = {
    "fabrikam.com": "Fabrikam, Inc.",
    "adatum.com": "A. Datum Corporation",
    "litware.com": "Litware, Inc.",
    "northwindtraders.com": "Northwind Traders",
    "contoso-partner.com": "Contoso Partner Network",
}
OTHER_DOMAINS = {
    "alpineskihouse.com": "Alpine Ski House", "blueyonderairlines.com": "Blue Yonder Airlines",
    "cohovineyard.com": "Coho Vineyard", "cohowinery.com": "Coho Winery", "consolidatedmessenger.com": "Consolidated Messenger",
    "fourthcoffee.com": "Fourth Coffee", "graphicdesigninstitute.com": "Graphic Design Institute",
    "humongousinsurance.com": "Humongous Insurance", "lucernepublishing.com": "Lucerne Publishing",
    "margiestravel.com": "Margie's Travel", "proseware.com": "Proseware, Inc.", "relecloud.com": "Relecloud",
    "schoolofinelarts.com": "School of Fine Art", "southridgevideo.com": "Southridge Video",
    "tailspintoys.com": "Tailspin Toys", "treyresearch.net": "Trey Research", "wideworldimporters.com": "Wide World Importers",
    "wingtiptoys.com": "Wingtip Toys", "woodgrovebank.com": "Woodgrove Bank", "worldwideimporters.com": "World Wide Importers",
    "bellowscollege.com": "Bellows College", "firstupconsultants.com": "First Up Consultants", "nodpublishers.com": "Nod Publishers",
    "thephone-company.com": "The Phone Company", "vanarsdelltd.com": "VanArsdel, Ltd.", "adventure-works.com": "Adventure Works Cycles",
    "gmail.com": "", "outlook.com": "", "yahoo.com": "", "icloud.com": "",
}
PRODUCTS = (
    "Surface Hub 2S", "Dynamics 365 Sales licences", "premium support plan", "XT-200 sensor kit", "cloud backup tier",
    "Contoso Analytics", "field service bundle", "M365 E5 seats", "warehouse scanners", "managed firewall service",
    "training vouchers", "ERP integration", "data migration package", "solar panel array", "fleet telematics units",
)
PROJECTS = (
    "Phoenix", "Atlas", "Northstar", "Blue Harbor", "Mercury", "Orion", "Redwood", "Summit", "Lighthouse", "Evergreen",
    "Falcon", "Horizon", "Keystone", "Sapphire", "Tidewater",
)
TOPICS = (
    "Q4 forecast", "pricing review", "renewal terms", "onboarding plan", "security assessment", "budget approval",
    "rollout schedule", "quarterly business review", "contract amendment", "support escalation", "partner summit",
    "marketing campaign", "training session", "hardware refresh", "data retention policy", "site visit",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
SUBJECTS = (
    "{project} status update", "Invoice {num} from {org}", "Quote request: {product}", "Meeting notes: {topic}",
    "{topic} - next steps", "Follow-up on {topic}", "Action required: {topic}", "Question about {product}",
    "Proposal for {org}", "Purchase order {num}", "Agenda for {weekday}'s call", "{project}: risks and issues",
    "Updated timeline for {project}", "Contract renewal for {org}", "Your order {num} has shipped",
    "Weekly report - week {week}", "Draft SOW for {project}", "Feedback on the {topic} deck", "Intro: {org} <> Contoso",
    "Re-scheduling our {topic} meeting", "Support case {num}: {product}", "Welcome to {project}",
)
SENTENCES = (
    "Thanks for the quick turnaround on the {topic} material.",
    "I wanted to follow up on our conversation from {weekday} about the {product}.",
    "As discussed, we are planning to move forward with the {project} rollout in {month}.",
    "Could you confirm whether the revised figures include the discount we agreed on?",
    "The team at {org} has asked for an updated proposal by the end of next week.",
    "I have attached the latest version of the {topic} document for your review.",
    "Please let me know if {weekday} afternoon works for a short call to align on the details.",
    "We still need sign-off from finance before we can issue purchase order {num}.",
    "Our current estimate is {amount} for the first phase, excluding travel.",
    "The pilot went well overall, although two sites reported delays with the {product}.",
    "Can we add the {topic} to the agenda for the quarterly business review?",
    "I spoke with {name} this morning and they are happy with the proposed timeline.",
    "We have reserved the large meeting room on {weekday} from 10:00 to 12:00.",
    "Legal has reviewed the contract and only flagged the liability clause in section 7.",
    "The shipment is scheduled to leave our warehouse on {weekday} and should arrive within five business days.",
    "Let me know if you need anything else from our side to close this out.",
    "I have copied {name} who will take over the day-to-day coordination from here.",
    "The dashboard now shows the {topic} numbers broken down by region.",
    "There is a known issue with the {product} firmware that we expect to be fixed in the next release.",
    "Can you share the list of attendees so that we can prepare badges in advance?",
    "We would like to extend the {project} engagement by another three months.",
    "The invoice total of {amount} is due within thirty days of receipt.",
    "Please treat the attached figures as confidential until the announcement in {month}.",
    "I have updated the tracker with the owners and due dates we agreed on.",
    "Unfortunately I will be out of the office on {weekday}, so {name} will join instead.",
    "Our security team would like to run a short assessment before go-live.",
    "The customer asked whether the {product} can be delivered in two batches.",
    "Attached are the minutes from today's meeting together with the open action items.",
    "We are on track for the {month} milestone, with the exception of the data migration.",
    "It would help to have a single point of contact for the {topic} going forward.",
    "The renewal quote reflects the new list prices that take effect in {month}.",
    "Good news: the steering committee approved the budget for {project}.",
    "I noticed a discrepancy between the order confirmation and the delivery note.",
    "Could you send over the signed copy once it has been countersigned?",
    "We can offer a workshop for up to twelve participants at no additional cost.",
    "The draft statement of work is ready, and I have highlighted the open questions in yellow.",
    "Following the review, we have decided to postpone phase two until {month}.",
    "Do you have any availability next week for a walkthrough of the {product}?",
    "I will circulate a summary to the wider team once we have agreed on the approach.",
    "Happy to jump on a call if that is easier than going back and forth by email.",
)
GREETINGS = ("Hi {first},", "Hello {first},", "Dear {first},", "Hi {first}", "Good morning {first},", "{first},", "Hi all,", "Hello team,")
CLOSINGS = ("Best regards,", "Kind regards,", "Thanks,", "Many thanks,", "Cheers,", "Best,", "Regards,", "Thank you,")
CATEGORIES = (
    ("Red category", "preset0"), ("Orange category", "preset1"), ("Yellow category", "preset3"),
    ("Green category", "preset4"), ("Blue category", "preset7"), ("Purple category", "preset8"),
    ("Customer", "preset9"), ("Follow up", "preset2"), ("Tracked to Dynamics 365", "preset5"),
)
SERVERS = ("DM6PR11MB4691", "SN6PR04MB4367", "BY5PR21MB1443", "CH3PR12MB8485", "PH0PR11MB5880", "MW4PR03MB6392", "AM0PR07MB4131", "DB9PR08MB6588")
LOCATIONS = (
    "Conference Room Rainier", "Conference Room Adams", "Conference Room Baker", "Microsoft Teams Meeting",
    "Building 4, Room 1021", "Customer site", "Cafeteria", "Board Room", "Online",
)
TASK_TITLES = (
    "Send revised quote to {org}", "Review {project} budget", "Prepare slides for the {topic}", "Call {name} about {product}",
    "Book travel for the {org} site visit", "Submit expense report", "Update the {project} risk register",
    "Check delivery status of order {num}", "Renew {product} subscription", "Draft agenda for {weekday}'s meeting",
    "Collect feedback on the {topic}", "Sign NDA with {org}", "Follow up on invoice {num}", "Schedule training for {product}",
)
_DAY = 86_400
_OWA_DIV = '<div class="elementToProof" style="font-family: Aptos, Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);">'
_WORD_HEAD = (
    '<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n<meta name="Generator" content="Microsoft Word 15 (filtered medium)">\r\n'
    "<style><!--\r\n/* Font Definitions */\r\n@font-face\r\n\t{font-family:\"Cambria Math\";\r\n\tpanose-1:2 4 5 3 5 4 6 3 2 4;}\r\n"
    "@font-face\r\n\t{font-family:Calibri;\r\n\tpanose-1:2 15 5 2 2 2 4 3 2 4;}\r\n@font-face\r\n\t{font-family:Aptos;}\r\n"
    "/* Style Definitions */\r\np.MsoNormal, li.MsoNormal, div.MsoNormal\r\n\t{margin:0cm;\r\n\tfont-size:11.0pt;\r\n\tfont-family:\"Aptos\",sans-serif;\r\n"
    "\tmso-ligatures:standardcontextual;\r\n\tmso-fareast-language:EN-US;}\r\na:link, span.MsoHyperlink\r\n\t{mso-style-priority:99;\r\n\tcolor:#467886;\r\n"
    "\ttext-decoration:underline;}\r\nspan.EmailStyle17\r\n\t{mso-style-type:personal-compose;\r\n\tfont-family:\"Aptos\",sans-serif;\r\n\tcolor:windowtext;}\r\n"
    ".MsoChpDefault\r\n\t{mso-style-type:export-only;\r\n\tfont-size:11.0pt;\r\n\tmso-fareast-language:EN-US;}\r\n@page WordSection1\r\n"
    "\t{size:612.0pt 792.0pt;\r\n\tmargin:72.0pt 72.0pt 72.0pt 72.0pt;}\r\ndiv.WordSection1\r\n\t{page:WordSection1;}\r\n--></style>\r\n</head>\r\n"
)
_OWA_HEAD = '<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style>\r\n</head>\r\n'
_DISCLAIMER = (
    '<p style="font-size:8pt;color:#7f7f7f">CONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the sole use of the '
    "intended recipient(s) and may contain confidential and privileged information. Any unauthorized review, use, disclosure or distribution "
    "is prohibited. If you are not the intended recipient, please contact the sender by reply e-mail and destroy all copies of the original "
    "message. {org} accepts no liability for any damage caused by any virus transmitted by this e-mail.</p>"
)


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who sends or receives generated mail."""

    name: str
    first: str
    address: str
    title: str
    org: str
    phone: str

    def recipient(self) -> dict[str, Any]:
        """Graph's recipient JSON."""
        return {"emailAddress": {"name": self.name, "address": self.address}}


@dataclass(slots=True)
class _Sent:
    """What a later reply needs to know about a generated message."""

    imid: str
    topic: str
    sender: Person
    to: list[Person]
    ts: int
    own: str  # the author's own HTML
    quoted: str  # the history below it
    depth: int
    refs: list[str]


def generate(state: EmulatorState, spec: GenerateSpec, *, now: datetime | None = None) -> None:
    """Add the users and content `spec` asks for; the same seed (and anchor) gives identical results."""
    anchor = (now or utcnow()).astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    # Bulk building makes millions of acyclic dicts; cyclic GC passes over them cost more than the work.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        _generate(state, spec, anchor)
    finally:
        if was_enabled:
            gc.enable()
    if spec.messages * len(_targets(state, spec)) >= 5_000:
        # One full pass now moves the bulk into the oldest generation; otherwise the first collection
        # after start-up walks all of it in the middle of serving a request (~1 s pause at 100k).
        gc.collect()


def _generate(state: EmulatorState, spec: GenerateSpec, anchor: datetime) -> None:
    _add_users(state, spec)
    targets = _targets(state, spec)
    internal = [_person_of(mb, state.tenant.domain) for mb in state.tenant.mailboxes.values() if _has_mailbox(mb)]
    for mb in targets:
        mail.init_mailbox(state, mb)
        others = [p for p in internal if p.address.lower() != mb.address.lower()]
        if spec.messages:
            rng = random.Random(f"{spec.seed}:{mb.upn.lower()}:messages")
            _MailWriter(state, mb, rng, others, anchor, state.tenant.domain).write(spec.messages, spec.folders)
        content = _other_content(spec, mb, others, anchor)
        if content is not None:
            _seed_modules(state, mb, content)


# users --------------------------------------------------------------------------------------


def _has_mailbox(mb: Mailbox) -> bool:
    return bool(mb.user.get("_hasMailbox", True))


def _add_users(state: EmulatorState, spec: GenerateSpec) -> None:
    rng = random.Random(f"{spec.seed}:users")
    domain = state.tenant.domain
    for n in range(1, spec.users + 1):
        upn = f"gen{n:03d}@{domain}"
        if state.tenant.find(upn) is not None:
            continue
        given, surname = rng.choice(GIVEN_NAMES), rng.choice(SURNAMES)
        alias = f"{given.lower()}.{surname.lower()}@{domain}"
        k = 2
        while state.tenant.find(alias) is not None:
            alias = f"{given.lower()}.{surname.lower()}{k}@{domain}"
            k += 1
        dept = rng.choice(DEPARTMENTS)
        user = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{upn}")),  # as UserSpec derives scenario ids
            "userPrincipalName": upn,
            "displayName": f"{given} {surname}",
            "givenName": given,
            "surname": surname,
            "mail": upn,
            "jobTitle": rng.choice(JOB_TITLES),
            "department": dept,
            "businessPhones": [f"+1 425 555 {rng.randint(100, 9999):04d}"],
            "mobilePhone": None,
            "officeLocation": f"{rng.randint(1, 40)}/{rng.randint(1000, 3999)}",
            "preferredLanguage": "en-US",
            "proxyAddresses": [f"SMTP:{upn}", f"smtp:{alias}"],
            "_hasMailbox": True,
        }
        mb = Mailbox(user)
        state.tenant.add(mb)
        mail.init_mailbox(state, mb)


def _targets(state: EmulatorState, spec: GenerateSpec) -> list[Mailbox]:
    if spec.mailboxes is None:
        return [mb for mb in state.tenant.mailboxes.values() if _has_mailbox(mb)]
    out: list[Mailbox] = []
    for name in spec.mailboxes:
        mb = state.tenant.find(name)
        if mb is None:
            raise ValueError(f"generate.mailboxes: no user {name!r} in the scenario")
        if not _has_mailbox(mb):
            raise ValueError(f"generate.mailboxes: {name!r} has no mailbox (hasMailbox: false)")
        if mb not in out:
            out.append(mb)
    return out


def _person_of(mb: Mailbox, domain: str) -> Person:
    name = mb.user.get("displayName") or mb.upn.split("@")[0]
    first = mb.user.get("givenName") or name.split()[0]
    phones = mb.user.get("businessPhones") or ["+1 425 555 0100"]
    return Person(name, first, mb.address, mb.user.get("jobTitle") or "", domain.split(".")[0].capitalize(), phones[0])


def _external_people(rng: random.Random, count: int) -> list[Person]:
    """A fixed address book of outside correspondents, several per CRM account domain."""
    people: list[Person] = []
    seen: set[str] = set()
    domains = list(CRM_DOMAINS.items()) * 3 + list(OTHER_DOMAINS.items())
    while len(people) < count:
        domain, org = domains[len(people) % len(domains)]
        given, surname = rng.choice(GIVEN_NAMES), rng.choice(SURNAMES)
        local = f"{given}.{surname}".lower() if org else f"{given.lower()}{surname[0].lower()}{rng.randint(1, 99)}"
        address = f"{local}@{domain}"
        if address in seen:
            continue
        seen.add(address)
        phone = f"+{rng.choice((1, 44, 49, 33, 81, 61))} {rng.randint(200, 989)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        people.append(Person(f"{given} {surname}", given, address, rng.choice(JOB_TITLES) if org else "", org, phone))
    return people


_FIELDS: dict[str, tuple[str, ...]] = {}
_SLOTS: dict[str, Callable[[random.Random, list[Person]], str]] = {
    "topic": lambda r, p: _pick(r, TOPICS),
    "product": lambda r, p: _pick(r, PRODUCTS),
    "project": lambda r, p: _pick(r, PROJECTS),
    "org": lambda r, p: _pick(r, p).org or "Fabrikam, Inc.",
    "name": lambda r, p: _pick(r, p).name,
    "weekday": lambda r, p: WEEKDAYS[int(r.random() * 5)],
    "month": lambda r, p: _pick(r, MONTHS),
    "num": lambda r, p: str(r.randint(10000, 99999)),
    "amount": lambda r, p: f"${r.randint(2, 480) * 250:,}",
    "week": lambda r, p: str(r.randint(1, 52)),
}


def _pick(rng: random.Random, seq: Sequence[T]) -> T:
    """rng.choice, without its per-call overhead (hot in the message loop)."""
    return seq[int(rng.random() * len(seq))]


def _fill(rng: random.Random, template: str, people: list[Person]) -> str:
    """A template with each of its {slots} drawn from the word lists (only the slots it uses)."""
    fields = _FIELDS.get(template)
    if fields is None:
        fields = _FIELDS[template] = tuple(f for _, f, _, _ in string.Formatter().parse(template) if f)
    return template.format_map({f: _SLOTS[f](rng, people) for f in fields})


# mail ---------------------------------------------------------------------------------------


def _fmt_sent(ts: int) -> str:
    d = datetime.fromtimestamp(ts, timezone.utc)
    hour = d.hour % 12 or 12
    return f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year} {hour}:{d.minute:02d} {'AM' if d.hour < 12 else 'PM'}"


def _iso_ts(ts: int) -> str:
    return iso(datetime.fromtimestamp(ts, timezone.utc))


class _MailWriter:
    """Writes one mailbox's generated messages, oldest first, so replies follow their parents."""

    def __init__(self, state: EmulatorState, mb: Mailbox, rng: random.Random, internal: list[Person], anchor: datetime, domain: str) -> None:
        self.state = state
        self.mb = mb
        self.rng = rng
        self.domain = domain
        self.owner = _person_of(mb, domain)
        self.internal = internal
        self.external = _external_people(rng, 160)
        self.crm = [p for p in self.external if p.address.split("@")[1] in CRM_DOMAINS]
        # Mail is laid out from the Monday of the anchor's week: its weekday pattern (fewer messages at weekends) then
        # draws the same random numbers whatever the day, so one seed gives the same mail every day, only dated later.
        self.anchor = int((anchor - timedelta(days=anchor.weekday())).timestamp())
        self.sentences = list(dict.fromkeys(_fill(rng, t, self.external) for t in SENTENCES for _ in range(6)))
        self.recent: deque[_Sent] = deque(maxlen=80)
        self.used_categories: set[str] = set()

    # one message ----------------------------------------------------------------------------
    def _paragraph(self) -> str:
        r = self.rng
        return " ".join(r.sample(self.sentences, 2 + int(r.random() * 6)))

    def _table(self) -> str:
        r = self.rng
        rows = "".join(
            f'<tr><td style="padding:2px 8px;border:1px solid #ccc">{r.choice(PRODUCTS)}</td>'
            f'<td style="padding:2px 8px;border:1px solid #ccc;text-align:right">{r.randint(1, 250)}</td>'
            f'<td style="padding:2px 8px;border:1px solid #ccc;text-align:right">${r.randint(10, 9000):,}.00</td></tr>'
            for _ in range(r.randint(3, 9))
        )
        return (
            '<table style="border-collapse:collapse;font-size:10pt"><tr><th style="padding:2px 8px;border:1px solid #ccc">Item</th>'
            '<th style="padding:2px 8px;border:1px solid #ccc">Qty</th><th style="padding:2px 8px;border:1px solid #ccc">Amount</th></tr>'
            f"{rows}</table>"
        )

    def _link(self) -> str:
        r = self.rng
        project = r.choice(PROJECTS)
        site = f"https://{self.domain.split('.')[0]}.sharepoint.com"
        url = r.choice((
            f"{site}/sites/{project}/Shared%20Documents/{r.choice(TOPICS).title().replace(' ', '%20')}.docx",
            f"{site}/:x:/r/sites/{project}/Tracker.xlsx?d=w{r.getrandbits(64):016x}",
            f"https://teams.microsoft.com/l/channel/19%3a{r.getrandbits(96):024x}%40thread.tacv2/General",
            f"https://portal.{r.choice(list(CRM_DOMAINS))}/orders/{r.randint(10000, 99999)}",
        ))
        return f'<p>You can find the details here: <a href="{url}" data-auth="NotApplicable">{url.split("/")[-1].split("?")[0]}</a></p>'

    def _signature(self, p: Person, closing: str) -> str:
        org = p.org or ""
        lines = [f"<b>{p.name}</b>"]
        if p.title:
            lines.append(f"{p.title}{' | ' + org if org else ''}")
        if org:
            lines.append(f"Phone: {p.phone}")
            lines.append(f'<a href="mailto:{p.address}">{p.address}</a>')
        sig = f"<p>{closing}</p><p>{'<br>'.join(lines)}</p>"
        if org and p.address.split("@", 1)[1] != self.domain and self.rng.random() < 0.3:
            sig += _DISCLAIMER.format(org=org)
        return sig

    def _own(self, sender: Person, to: list[Person]) -> tuple[str, str | None]:
        """(HTML of what the sender wrote, its bodyPreview when the opening text alone decides it)."""
        r = self.rng
        first = to[0].first if to else "there"
        word = r.random() < 0.5
        opening, closing = ('<p class="MsoNormal">', "</p>") if word else (_OWA_DIV, "</div>")
        texts = [_pick(r, GREETINGS).format(first=first)]
        for _ in range(1 + int(r.random() * 7)):
            texts.append(self._paragraph())
        parts = [f"{opening}{t}{closing}" for t in texts]
        roll = r.random()
        if roll < 0.12:
            parts.append(self._table())
        elif roll < 0.3:
            parts.append(self._link())
        parts.append(self._signature(sender, _pick(r, CLOSINGS)))
        own = ('<div class="WordSection1">' if word else "<div>") + "".join(parts) + "</div>"
        # The greeting and paragraphs are plain text (no tags or entities), so once they hold more
        # than 255 characters they alone are mail.preview's answer (tests check this equivalence).
        text = " ".join(" ".join(texts).split())
        return own, (text[:255] if len(text) > 255 else None)

    @staticmethod
    def _quote(parent: _Sent, forward: bool) -> str:
        to = "; ".join(p.name for p in parent.to)
        label = "---------- Forwarded message ----------<br>" if forward else ""
        return (
            '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">'
            f'<font face="Calibri, sans-serif" style="font-size:11pt" color="#000000">{label}<b>From:</b> {parent.sender.name} '
            f"&lt;{parent.sender.address}&gt;<br><b>Sent:</b> {_fmt_sent(parent.ts)}<br><b>To:</b> {to}<br><b>Subject:</b> "
            f"{parent.topic}</font><div>&nbsp;</div></div>{parent.own}{parent.quoted}"
        )

    def _imid(self, sender: Person) -> str:
        r = self.rng
        domain = sender.address.split("@", 1)[1]
        if domain == self.domain:
            server = r.choice(SERVERS)
            return f"<{server}{r.getrandbits(160):040X}@{server}.namprd{r.randint(10, 22)}.prod.outlook.com>"
        return f"<{uuid.UUID(int=r.getrandbits(128))}@{domain}>"

    def _timestamps(self, n: int) -> list[int]:
        """n receive times over the last 180 days, weighted to working hours, ascending."""
        r = self.rng
        start = self.anchor - 180 * _DAY
        out = []
        for _ in range(n):
            day = r.randrange(180)
            if (datetime.fromtimestamp(start + day * _DAY, timezone.utc).weekday() >= 5) and r.random() < 0.8:
                day = max(0, day - r.randint(1, 2))
            hour = min(23, max(0, int(r.gauss(13, 3))))
            out.append(start + day * _DAY + hour * 3600 + r.randrange(3600))
        out.sort()
        return out

    def write(self, count: int, folders: list[str]) -> None:
        """Insert `count` messages spread over `folders` (~10% into Sent Items)."""
        r = self.rng
        folder_ids = [_ensure_folder(self.mb, path) for path in folders or ["inbox"]]
        sent_id = self.mb.extra["mail"].well_known["sentitems"]
        insert = mail.insert_message
        for ts in self._timestamps(count):
            sent_item = r.random() < 0.1 or not (self.internal or self.external)
            folder = sent_id if sent_item else folder_ids[r.randrange(len(folder_ids))]
            msg, rec = self._message(ts, sent_item)
            insert(self.state, self.mb, folder, msg, notify=False)
            self.recent.append(rec)
        cats = self.mb.extra.setdefault("masterCategories", {})
        known = {c["displayName"].lower() for c in cats.values()}
        for name, color in CATEGORIES:
            if name in self.used_categories and name.lower() not in known:
                cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.mb.id}:category:{name.lower()}"))
                cats[cid] = {"id": cid, "displayName": name, "color": color}

    def _message(self, ts: int, sent_item: bool) -> tuple[dict[str, Any], _Sent]:
        r = self.rng
        owner = self.owner
        parent = self.recent[-1 - min(int(r.expovariate(0.15)), len(self.recent) - 1)] if self.recent and r.random() < 0.35 else None
        forward = parent is not None and r.random() < 0.15
        # sender and recipients
        if sent_item:
            sender = owner
            if parent is not None and not forward and parent.sender is not owner:
                to = [parent.sender]
            else:
                to = [self._someone()]
        elif parent is not None and not forward:
            # someone on the parent answers: its sender following up, or another recipient replying all
            others = [p for p in parent.to if p is not owner]
            if parent.sender is owner:
                sender = others[0] if others else self._someone()
                to = [owner]
            elif others and r.random() < 0.5:
                sender = others[int(r.random() * len(others))]
                to = [parent.sender, owner]
            else:
                sender = parent.sender
                to = [owner]
        else:
            sender = self._someone()
            to = [owner]
        extra_to = r.choice((0, 0, 0, 1, 1, 2, 3))
        for _ in range(extra_to):
            p = self._someone(internal_bias=0.6)
            if p is not sender and p not in to:
                to.append(p)
        cc: list[Person] = []
        if r.random() < 0.3:
            for _ in range(r.randint(1, 5 - len(to) if len(to) < 5 else 1)):
                p = self._someone(internal_bias=0.7)
                if p is not sender and p not in to and p not in cc and len(to) + len(cc) < 5:
                    cc.append(p)
        if not sent_item and r.random() < 0.1 and len(to) > 1:
            to.remove(owner)  # the owner got it as cc
            cc.insert(0, owner)
        # subject and body
        if parent is not None:
            topic = parent.topic
            subject = ("FW: " if forward else "RE: ") + topic
        else:
            topic = _fill(r, _pick(r, SUBJECTS), self.external)
            subject = topic
        own, preview = self._own(sender, to)
        quoted = ""
        depth = 0
        if parent is not None:
            depth = parent.depth + 1
            quoted = self._quote(parent, forward) if depth <= 3 else self._quote(_Sent(parent.imid, parent.topic, parent.sender, parent.to, parent.ts, parent.own, "", 0, []), forward)
        head = _WORD_HEAD if own.startswith('<div class="WordSection1">') else _OWA_HEAD
        content = f"<html>\r\n{head}<body>\r\n{own}{quoted}\r\n</body>\r\n</html>\r\n"
        imid = self._imid(sender)
        headers: list[dict[str, str]] = []
        refs: list[str] = []
        if parent is not None and not forward:
            refs = [*parent.refs[-8:], parent.imid]
            headers = [{"name": "In-Reply-To", "value": parent.imid}, {"name": "References", "value": " ".join(refs)}]
        age_days = (self.anchor - ts) / _DAY
        cats: list[str] = []
        if r.random() < 0.12:
            name = r.choice(CATEGORIES)[0]
            if name == "Tracked to Dynamics 365" and sender.address.split("@")[1] not in CRM_DOMAINS and not any(p.address.split("@")[1] in CRM_DOMAINS for p in to):
                name = "Follow up"
            cats.append(name)
            self.used_categories.add(name)
        flag_roll = r.random()
        if flag_roll < 0.03:
            due = ts + r.randint(1, 14) * _DAY
            flag: dict[str, Any] = {"flagStatus": "flagged", "startDateTime": {"dateTime": _iso_ts(ts)[:-1] + ".0000000", "timeZone": "UTC"},
                                    "dueDateTime": {"dateTime": _iso_ts(due)[:-1] + ".0000000", "timeZone": "UTC"}}
        elif flag_roll < 0.04:
            flag = {"flagStatus": "complete", "completedDateTime": {"dateTime": _iso_ts(min(self.anchor, ts + _DAY))[:-1] + ".0000000", "timeZone": "UTC"}}
        else:
            flag = {"flagStatus": "notFlagged"}
        received = _iso_ts(ts)
        imp = r.random()
        msg: dict[str, Any] = {
            "createdDateTime": received,
            "lastModifiedDateTime": received,
            "receivedDateTime": received,
            "sentDateTime": _iso_ts(ts - r.randint(1, 90)),
            "hasAttachments": r.random() < 0.15,
            "internetMessageId": imid,
            "subject": subject,
            "bodyPreview": preview if preview is not None else mail.preview({"contentType": "html", "content": content}),
            "importance": "high" if imp < 0.07 else "low" if imp < 0.1 else "normal",
            "isReadReceiptRequested": False,
            "isDeliveryReceiptRequested": False,
            "isRead": sent_item or r.random() < 0.35 + 0.6 * min(1.0, age_days / 30),
            "isDraft": False,
            "inferenceClassification": "other" if (not sender.org and r.random() < 0.5) else "focused",
            "body": {"contentType": "html", "content": content},
            "sender": sender.recipient(),
            "from": sender.recipient(),
            "toRecipients": [p.recipient() for p in to],
            "ccRecipients": [p.recipient() for p in cc],
            "bccRecipients": [],
            "replyTo": [],
            "categories": cats,
            "flag": flag,
        }
        if headers:
            msg["internetMessageHeaders"] = headers
        rec = _Sent(imid, topic, sender, to, ts, own, quoted if depth <= 3 else "", depth, refs)
        return msg, rec

    def _someone(self, internal_bias: float = 0.4) -> Person:
        r = self.rng
        roll = r.random()
        if self.internal and (roll < internal_bias or not self.external):
            return self.internal[r.randrange(len(self.internal))]
        if self.crm and r.random() < 0.45:
            return self.crm[r.randrange(len(self.crm))]
        return self.external[r.randrange(len(self.external))]


def _ensure_folder(mb: Mailbox, path: str) -> str:
    """The id of a folder path such as `inbox/Projects/2026`, creating missing folders with stable ids."""
    ms = mb.extra["mail"]
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise ValueError("generate.folders: empty folder path")
    first = parts[0].lower()
    coll = mail.folder_coll(mb)
    if first in ms.well_known:
        fid = ms.well_known[first]
        rest = parts[1:]
    else:
        fid = ms.root_id
        rest = parts
    walked = [fid]
    for name in rest:
        walked.append(name.lower())
        nxt = next((f.key for f in coll if f.data["parentFolderId"] == fid and f.data["displayName"].lower() == name.lower()), None)
        if nxt is None:
            key = "AAMkAD" + b64url(stable_bytes(mb.id, "generated-folder", "/".join(walked), n=30)) + "AAA="
            nxt = mail.create_folder(mb, fid, name, key=key).key
        fid = nxt
    return fid


# calendar, contacts, To Do ------------------------------------------------------------------


def _other_content(spec: GenerateSpec, mb: Mailbox, internal: list[Person], anchor: datetime) -> UserSpec | None:
    """A UserSpec carrying only generated events, contacts and To Do tasks (None when there are none)."""
    if not (spec.events or spec.contacts or spec.tasks):
        return None
    people = _external_people(random.Random(f"{spec.seed}:{mb.upn.lower()}:people"), 120)
    owner = _person_of(mb, "")  # only its address is used
    events = _events(random.Random(f"{spec.seed}:{mb.upn.lower()}:events"), spec.events, owner, internal, people, anchor)
    contacts = _contacts(random.Random(f"{spec.seed}:{mb.upn.lower()}:contacts"), spec.contacts, people)
    tasks = _tasks(random.Random(f"{spec.seed}:{mb.upn.lower()}:tasks"), spec.tasks, people, anchor)
    lists = []
    if tasks:
        half = (len(tasks) + 1) // 2
        lists = [
            TodoListSpec.model_construct(displayName="Follow-ups", wellknownListName="none", isOwner=True, isShared=False, tasks=tasks[:half]),
            TodoListSpec.model_construct(displayName="Project tasks", wellknownListName="none", isOwner=True, isShared=False, tasks=tasks[half:]),
        ]
    return UserSpec.model_construct(
        userPrincipalName=mb.upn, id=mb.id, mail=mb.address, displayName=mb.user.get("displayName"),
        events=events, contacts=contacts, contactFolders={}, todo=TodoSpec.model_construct(lists=[t for t in lists if t.tasks]),
        mailFolders={}, masterCategories=[],
    )


def _local(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


_SINGLE_EVENTS = ("{topic} review", "{project} planning", "Customer call: {org}", "Lunch & learn: {product}", "{topic} workshop",
                  "Demo of the {product} for {org}", "Contract review with {org}", "Interview: {project} team")
_SERIES = (("{project} stand-up", "daily"), ("Weekly sync with {org}", "weekly"), ("{project} weekly status", "weekly"),
           ("1:1 with {name}", "weekly"), ("Monthly {topic} check-in", "absoluteMonthly"))


def _events(rng: random.Random, n: int, owner: Person, internal: list[Person], people: list[Person], anchor: datetime) -> list[dict[str, Any]]:
    """Meetings within -90..+365 days; three in ten are daily, weekly or monthly series."""
    base = int(anchor.timestamp())
    pool = [p for p in internal + people[:40] if p.address != owner.address]
    out: list[dict[str, Any]] = []
    for i in range(n):
        recurring = i % 10 in (1, 4, 7)
        day = rng.randint(-90, 0) if recurring else rng.randint(-90, 365)
        weekday = datetime.fromtimestamp(base + day * _DAY, timezone.utc).weekday()
        if weekday >= 5:
            day += 7 - weekday  # meetings start on weekdays
        all_day = not recurring and rng.random() < 0.05
        start = base + day * _DAY + (0 if all_day else rng.choice((8, 9, 9, 10, 11, 13, 14, 15, 16)) * 3600 + rng.choice((0, 0, 1800)))
        dur = _DAY if all_day else rng.choice((30, 30, 60, 60, 60, 90, 120)) * 60
        attendees = [
            {"emailAddress": {"address": p.address, "name": p.name}, "type": "optional" if rng.random() < 0.2 else "required"}
            for p in rng.sample(pool, k=min(len(pool), rng.randint(0 if not recurring else 1, 5)))
        ]
        if recurring:
            template, kind = _pick(rng, _SERIES)
            dur = min(dur, 900 if kind == "daily" else dur)
        else:
            template, kind = _pick(rng, _SINGLE_EVENTS), ""
        subject = _fill(rng, template, internal if template.startswith("1:1") and internal else people)
        ev: dict[str, Any] = {
            "subject": subject[0].upper() + subject[1:],
            "body": {"contentType": "html", "content": f"<html><body><p>{_fill(rng, _pick(rng, SENTENCES), people)}</p></body></html>"},
            "start": {"dateTime": _local(start), "timeZone": "UTC"},
            "end": {"dateTime": _local(start + dur), "timeZone": "UTC"},
            "isAllDay": all_day,
            "location": {"displayName": _pick(rng, LOCATIONS)},
            "attendees": attendees,
            "showAs": "free" if all_day else _pick(rng, ("busy", "busy", "busy", "tentative")),
            "importance": "high" if rng.random() < 0.05 else "normal",
            "sensitivity": "private" if rng.random() < 0.05 else "normal",
            "reminderMinutesBeforeStart": 0 if all_day else _pick(rng, (5, 10, 15, 15, 30)),
            "isReminderOn": not all_day,
            "isOnlineMeeting": rng.random() < 0.4,
            "categories": [_pick(rng, CATEGORIES)[0]] if rng.random() < 0.15 else [],
        }
        if ev["isOnlineMeeting"]:
            ev["onlineMeetingProvider"] = "teamsForBusiness"
        if recurring:
            d = datetime.fromtimestamp(start, timezone.utc)
            pattern: dict[str, Any] = {"type": kind, "interval": 1}
            if kind == "weekly":
                pattern.update(interval=_pick(rng, (1, 1, 2)), daysOfWeek=[WEEKDAYS[d.weekday()].lower()], firstDayOfWeek="sunday")
            elif kind == "absoluteMonthly":
                pattern["dayOfMonth"] = d.day
            end_kind = _pick(rng, ("noEnd", "noEnd", "endDate", "numbered"))
            rrange: dict[str, Any] = {"type": end_kind, "startDate": d.strftime("%Y-%m-%d"), "recurrenceTimeZone": "UTC"}
            if end_kind == "endDate":
                rrange["endDate"] = (d + timedelta(days=_pick(rng, (60, 120, 240)))).strftime("%Y-%m-%d")
            elif end_kind == "numbered":
                rrange["numberOfOccurrences"] = _pick(rng, (5, 10, 12))
            ev["recurrence"] = {"pattern": pattern, "range": rrange}
        if attendees and rng.random() < 0.25:  # an invitation someone else organised
            org = _pick(rng, pool)
            ev["organizer"] = {"emailAddress": {"name": org.name, "address": org.address}}
        out.append(ev)
    return out


def _contacts(rng: random.Random, n: int, people: list[Person]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cities = (("Redmond", "WA", "98052", "United States"), ("London", "", "EC1A 1BB", "United Kingdom"), ("Munich", "BY", "80331", "Germany"),
              ("Lyon", "", "69001", "France"), ("Osaka", "", "530-0001", "Japan"), ("Toronto", "ON", "M5H 2N2", "Canada"))
    for i in range(n):
        if i < len(people):
            p = people[i]
            given, _, surname = p.name.partition(" ")
        else:  # beyond the shared address book: names made unique by a suffix
            given, surname = rng.choice(GIVEN_NAMES), f"{rng.choice(SURNAMES)}{i}"
            domain = rng.choice(list(CRM_DOMAINS) + list(OTHER_DOMAINS))
            p = Person(f"{given} {surname}", given, f"{given}.{surname}@{domain}".lower(), rng.choice(JOB_TITLES),
                       {**CRM_DOMAINS, **OTHER_DOMAINS}[domain], f"+1 425 555 {rng.randint(1000, 9999)}")
        city, st, postal, country = rng.choice(cities)
        c: dict[str, Any] = {
            "givenName": given,
            "surname": surname,
            "displayName": p.name,
            "fileAs": f"{surname}, {given}",
            "emailAddresses": [{"address": p.address, "name": p.name}],
            "businessPhones": [p.phone],
            "mobilePhone": f"+1 206 555 {rng.randint(1000, 9999)}" if rng.random() < 0.5 else None,
            "companyName": p.org or None,
            "jobTitle": p.title or None,
            "businessAddress": {"street": f"{rng.randint(1, 999)} {rng.choice(('Main St', 'Market St', 'High Street', 'Lake Ave', 'Park Rd'))}",
                                "city": city, "state": st, "postalCode": postal, "countryOrRegion": country},
            "categories": ["Customer"] if p.address.split("@")[1] in CRM_DOMAINS and rng.random() < 0.5 else [],
        }
        if rng.random() < 0.2:
            c["personalNotes"] = f"Met at the {rng.choice(TOPICS)} workshop."
        out.append(c)
    return out


def _tasks(rng: random.Random, n: int, people: list[Person], anchor: datetime) -> list[dict[str, Any]]:
    base = int(anchor.timestamp())
    out: list[dict[str, Any]] = []
    statuses = ("notStarted", "notStarted", "notStarted", "inProgress", "inProgress", "completed", "completed", "waitingOnOthers", "deferred")
    for _ in range(n):
        title = _fill(rng, _pick(rng, TASK_TITLES), people)
        status = rng.choice(statuses)
        t: dict[str, Any] = {
            "title": title,
            "status": status,
            "importance": rng.choice(("low", "normal", "normal", "normal", "high")),
            "body": {"content": _fill(rng, _pick(rng, SENTENCES), people) if rng.random() < 0.6 else "", "contentType": "text"},
            "categories": [rng.choice(("Customer", "Follow up", "Blue category"))] if rng.random() < 0.2 else [],
        }
        if rng.random() < 0.7:
            due = base + rng.randint(-30, 60) * _DAY
            t["dueDateTime"] = {"dateTime": _local(due) + ".0000000", "timeZone": "UTC"}
            if rng.random() < 0.4 and status != "completed":
                t["isReminderOn"] = True
                t["reminderDateTime"] = {"dateTime": _local(due - 3600 * 15) + ".0000000", "timeZone": "UTC"}
        if status == "completed":
            t["completedDateTime"] = {"dateTime": _local(base - rng.randint(0, 30) * _DAY) + ".0000000", "timeZone": "UTC"}
        out.append(t)
    return out


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{name}":
            raise
        return None


def _seed_modules(state: EmulatorState, mb: Mailbox, content: UserSpec) -> None:
    wanted = (("calendar", "events", len(content.events)), ("contacts", "contacts", len(content.contacts)),
              ("todo", "tasks", sum(len(t.tasks) for t in content.todo.lists)))
    for module_name, what, count in wanted:
        if not count:
            continue
        mod = _module(module_name)
        seed = getattr(mod, "seed", None) if mod is not None else None
        if seed is None:
            log.info("generate: connector.emulator.%s is not available; skipping %d generated %s for %s", module_name, count, what, mb.upn)
            continue
        only = UserSpec.model_construct(
            userPrincipalName=content.userPrincipalName, id=content.id, mail=content.mail, displayName=content.displayName,
            events=content.events if module_name == "calendar" else [],
            contacts=content.contacts if module_name == "contacts" else [],
            contactFolders={}, todo=content.todo if module_name == "todo" else TodoSpec.model_construct(lists=[]),
            mailFolders={}, masterCategories=[],
        )
        seed(state, mb, only)


