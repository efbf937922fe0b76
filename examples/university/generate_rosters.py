"""Generate the example university's enrolment CSVs (enrolments/*.csv), deterministically.

The rosters are fictitious but shaped like the real exports course teams hand over: a
student-records extract (TM351, with withdrawn students kept for audit), a Moodle participants
download (A233), a Canvas people export (DD211) and hubfleet's own ``username,role`` (M269, DSS).
About 3,000 students in all; some are on two presentations at once (e.g. TM351 and M269 in
2026J), some resit TM351.

The output is committed. Re-run after changing this script and commit both:

    .venv/bin/python examples/university/generate_rosters.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "enrolments"
SEED = 351
POOL = 3000

FORENAMES = (
    "Aisha Alex Amelia Ben Bethany Callum Chen Chidi Chloe Daniel Dev Eilidh Ella Emeka Emily Ethan Fatima Finn "
    "Freya Grace Hannah Harry Isla Jack James Jia Kai Kwame Laura Leah Liam Lucy Maya Mohammed Nadia Noah Olivia "
    "Oscar Priya Rhys Ruby Ryan Saoirse Sam Sofia Tom Wei Yusuf Zara Zoe"
).split()
SURNAMES = (
    "Adeyemi Ahmed Baker Begum Brown Campbell Chen Clarke Davies Evans Fraser Green Hall Hughes Hussain Jones Kaur "
    "Khan Kowalski Lewis Li MacDonald Martin Morgan Murphy Nguyen O'Brien Okafor Owen Patel Price Roberts Robinson "
    "Scott Shah Singh Smith Taylor Thomas Thompson Walker Wang Watson White Williams Wilson Wood Wright Young"
).split()


class Person:
    def __init__(self, username: str, forename: str, surname: str, person_id: str):
        self.username = username
        self.forename = forename
        self.surname = surname
        self.person_id = person_id

    @property
    def email(self) -> str:
        return f"{self.forename}.{self.surname}".lower().replace("'", "") + "@students.example.ac.uk"


def people(rng: random.Random, n: int) -> list[Person]:
    seen: set[str] = set()
    out = []
    while len(out) < n:
        fore, sur = rng.choice(FORENAMES), rng.choice(SURNAMES)
        username = f"{fore[0]}{sur[0]}{rng.randint(1000, 9999)}".lower()
        if username in seen:
            continue
        seen.add(username)
        out.append(Person(username, fore, sur, f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.randint(1000000, 9999999)}"))
    return out


def write(name: str, header: list[str], rows: list[list[str]]) -> int:
    with open(OUT / name, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return len(rows)


def student_records(name: str, pres: str, students: list[Person], rng: random.Random) -> int:
    """A student-records extract: one row per registration; about 3% have withdrawn."""
    rows = [
        [p.person_id, p.username, p.surname, p.forename, pres, "Withdrawn" if rng.random() < 0.03 else "Registered"]
        for p in students
    ]
    return write(name, ["PERSON_ID", "USERNAME", "SURNAME", "FORENAMES", "PRESENTATION", "STATUS"], rows)


def hubfleet(name: str, students: list[Person], staff: dict[str, str]) -> int:
    rows = [[u, role] for u, role in staff.items()] + [[p.username, "student"] for p in students]
    return write(name, ["username", "role"], rows)


def moodle(name: str, students: list[Person], staff: dict[str, str], rng: random.Random) -> int:
    """A Moodle participants download, with tutor groups and a couple of unenrolled ("No roles") rows."""
    roles = {"tutor": "Non-editing teacher", "instructor": "Editing teacher"}
    rows = [["Staff", u.upper(), u, f"{u}@example.ac.uk", roles[r], ""] for u, r in staff.items()]
    for i, p in enumerate(students):
        role = "No roles" if rng.random() < 0.01 else "Student"
        rows.append([p.forename, p.surname, p.username, p.email, role, f"Tutor group {i % 12 + 1}"])
    return write(name, ["First name", "Last name", "Username", "Email address", "Roles", "Groups"], rows)


def canvas(name: str, section: str, students: list[Person], staff: dict[str, str]) -> int:
    """A Canvas people export, starting with the gradebook's "Points Possible" pseudo-row."""
    roles = {"tutor": "TaEnrollment", "instructor": "TeacherEnrollment"}
    rows = [["    Points Possible", "", "", "", "", ""]]
    rows += [[f"Staff, {u}", str(9000 + i), "", u, section, roles[r]] for i, (u, r) in enumerate(staff.items())]
    rows += [
        [f"{p.surname}, {p.forename}", str(10000 + i), p.person_id, p.username, section, "StudentEnrollment"]
        for i, p in enumerate(students)
    ]
    return write(name, ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Role"], rows)


def main() -> None:
    rng = random.Random(SEED)
    pool = people(rng, POOL)
    OUT.mkdir(exist_ok=True)
    cursor = 0

    def take(n: int) -> list[Person]:
        nonlocal cursor
        cursor += n
        return pool[cursor - n : cursor]

    tm351_25 = take(620)
    tm351_26 = take(700) + rng.sample(tm351_25, 30)  # resits
    m269_26 = take(380) + rng.sample(tm351_26[:700], 150)  # on TM351 and M269 at the same time
    m269_27 = take(260)
    a233_26b = take(210)
    a233_26j = take(230)
    dd211_26 = take(380) + rng.sample(a233_26j, 40)  # an arts student on two modules
    dd211_27 = take(150)
    dss_26 = take(40) + rng.sample(tm351_25, 25) + rng.sample(m269_26, 10)
    dss_27 = pool[cursor:]  # everyone left over registered early for next summer
    assert len(dss_27) >= 20, "pool too small"

    counts = {
        "TM351-2025J.csv": student_records("TM351-2025J.csv", "2025J", tm351_25, rng),
        "TM351-2026J.csv": student_records("TM351-2026J.csv", "2026J", tm351_26, rng),
        "M269-2026J.csv": hubfleet("M269-2026J.csv", m269_26, {"dh7712": "tutor", "sr2208": "tutor"}),
        "M269-2027B.csv": hubfleet("M269-2027B.csv", m269_27, {}),
        "A233-2026B.csv": moodle("A233-2026B.csv", a233_26b, {"ef4410": "instructor", "hc3391": "tutor"}, rng),
        "A233-2026J.csv": moodle("A233-2026J.csv", a233_26j, {"ef4410": "instructor", "hc3391": "tutor"}, rng),
        "DD211-2026J.csv": canvas("DD211-2026J.csv", "DD211 2026J", dd211_26, {"cb5521": "instructor", "yo1183": "tutor"}),
        "DD211-2027B.csv": canvas("DD211-2027B.csv", "DD211 2027B", dd211_27, {"cb5521": "instructor"}),
        "DSS-2026.csv": hubfleet("DSS-2026.csv", dss_26, {}),
        "DSS-2027.csv": hubfleet("DSS-2027.csv", dss_27, {}),
    }
    for name, n in counts.items():
        print(f"{OUT.relative_to(HERE)}/{name}: {n} rows")
    print(f"{len(pool)} distinct students")


if __name__ == "__main__":
    main()
