"""The general-ability probe: 100 short questions the project wrote, each with a deterministic check.

``bundled:general-probe`` (split ``test`` only: a probe is never trained on) asks a model questions that
have nothing to do with any alignment task, so that an eval stage can see what alignment cost
(``probe:`` and ``forgetting:`` on an eval stage, ``rlft.stages.guards``). Five categories of 20:

- ``facts`` — common knowledge ("What is the capital of Japan?"), checked by an alias appearing as
  whole words, or numerically;
- ``arithmetic`` — sums, products and one-step word problems, checked numerically (math-verify on the
  final answer, ``rewards.math``);
- ``reasoning`` — comparisons, syllogisms, yes/no questions, checked by the first option the answer
  names, or numerically;
- ``language`` — antonyms, plurals, tenses, spelling, checked like facts (or by the first option named);
- ``instructions`` — format following in the style of IFEval ("answer in one word", "reply in uppercase",
  "list three ...", "end with ...", JSON, quotes), checked by the format alone.

Columns: ``prompt`` (one user message), ``category``, and the check: ``check``, ``reference``, ``options``
(``rewards.general``, whose ``general_ability`` reward scores a row). Rows go round-robin over the
categories, so the first N (``probe.limit``) cover every category alike. Every item also carries a
hand-written correct ``example`` answer (in ``ITEMS``, not in the rows): the tests check that each passes its
own check, and that no question but an instruction passes it when repeated as the answer (no question lists
its right option first, or ends on its own numeric answer).
"""

from __future__ import annotations

from typing import NamedTuple

from rlft.errors import RlftError


class ProbeItem(NamedTuple):
    category: str
    question: str
    check: str
    reference: str
    example: str  # a hand-written correct answer, for the tests (not part of the rows)
    options: str = ""


def _items(category: str, rows: list[tuple]) -> list[ProbeItem]:
    return [ProbeItem(category, *row) for row in rows]


NUMBER = " Answer with a number."

FACTS = _items(
    "facts",
    [
        ("What is the capital of France? Answer with the name only.", "answer", "Paris", "Paris"),
        ("What is the capital of Japan? Answer with the name only.", "answer", "Tokyo", "Tokyo"),
        ("What is the largest planet in our solar system?", "answer", "Jupiter", "Jupiter is the largest planet."),
        ("Which planet is known as the Red Planet?", "answer", "Mars", "Mars"),
        ("What is the largest ocean on Earth?", "answer", "Pacific", "The Pacific Ocean."),
        ("What gas do plants take in from the air to make their food?", "answer", "carbon dioxide|CO2", "Carbon dioxide (CO2)."),
        ("How many legs does a spider have?" + NUMBER, "number", "8", "A spider has 8 legs."),
        ("What is the chemical symbol for gold?", "answer", "Au", "Au"),
        ('Who wrote the play "Romeo and Juliet"?', "answer", "Shakespeare", "William Shakespeare wrote it."),
        ("At how many degrees Celsius does water freeze?" + NUMBER, "number", "0", "Water freezes at 0 degrees Celsius."),
        ("At how many degrees Celsius does water boil at sea level?" + NUMBER, "number", "100", "100"),
        ("How many days are there in a leap year?" + NUMBER, "number", "366", "A leap year has 366 days."),
        ("What language is mainly spoken in Brazil?", "answer", "Portuguese", "Portuguese"),
        ("On which continent is Egypt?", "answer", "Africa", "Egypt is in Africa."),
        ("What is the hardest natural substance?", "answer", "diamond|diamonds", "Diamond."),
        ("Which organ pumps blood through the human body?", "answer", "heart", "The heart."),
        ("Which star is at the centre of our solar system?", "answer", "Sun", "The Sun."),
        ("How many continents are there on Earth?" + NUMBER, "number", "7", "There are seven continents."),
        ("What is H2O commonly called?", "answer", "water", "Water."),
        ("What colour do you get by mixing blue and yellow paint?", "answer", "green", "Green."),
    ],
)

ARITHMETIC = _items(
    "arithmetic",
    [
        ("What is 7 + 5?" + NUMBER, "number", "12", "7 + 5 = 12"),
        ("What is 9 times 6?" + NUMBER, "number", "54", "54"),
        ("What is 100 - 37?" + NUMBER, "number", "63", "100 - 37 = 63"),
        ("What is 132 divided by 11?" + NUMBER, "number", "12", "12"),
        ("Sara has 3 bags with 4 apples in each bag. How many apples does she have?" + NUMBER, "number", "12", "3 x 4 = 12"),
        ("A train leaves at 2 pm and arrives at 5 pm. How many hours does the trip take?" + NUMBER, "number", "3", "3 hours"),
        ("Tom had 20 dollars and spent 8. How many dollars does he have left?" + NUMBER, "number", "12", "20 - 8 = 12"),
        ("What is half of 50?" + NUMBER, "number", "25", "Half of 50 is 25."),
        ("A pizza is cut into 8 slices and 3 are eaten. How many slices are left?" + NUMBER, "number", "5", "5 slices are left."),
        ("What is 15% of 200?" + NUMBER, "number", "30", "15% of 200 is 30."),
        ("One pencil costs 2 dollars. How many dollars do 7 pencils cost?" + NUMBER, "number", "14", "7 x 2 = 14"),
        ("What is 3 squared?" + NUMBER, "number", "9", "9"),
        ("A rectangle is 6 cm long and 4 cm wide. What is its area in square centimetres?" + NUMBER, "number", "24", "24"),
        ("How many minutes are there in 3 hours?" + NUMBER, "number", "180", "3 x 60 = 180"),
        ("What is 1000 minus 1?" + NUMBER, "number", "999", "999"),
        ("Ana reads 10 pages every day. How many pages does she read in one week?" + NUMBER, "number", "70", "7 x 10 = 70"),
        ("What is 0.5 + 0.25?" + NUMBER, "number", "0.75", "0.75"),
        ("A box holds 12 eggs. How many eggs are in 4 boxes?" + NUMBER, "number", "48", "12 x 4 = 48 eggs."),
        ("What is the next number in the sequence 2, 4, 6, 8?" + NUMBER, "number", "10", "10"),
        ("What is 72 divided by 8?" + NUMBER, "number", "9", "72 / 8 = 9"),
    ],
)

YES_NO = "yes|no"

REASONING = _items(
    "reasoning",
    [
        (
            "Tom is taller than Ann, and Ann is taller than Bo. Who is the shortest? Answer with the name only.",
            "choice",
            "Bo",
            "Bo",
            "Tom|Ann|Bo",
        ),
        ("All cats are animals, and Felix is a cat. Is Felix an animal?", "choice", "yes", "Yes.", YES_NO),
        ("Which is heavier: 1 kilogram of iron or 2 kilograms of feathers?", "choice", "feathers", "The feathers.", "feathers|iron"),
        ("Is the number 7 even or odd?", "choice", "odd", "7 is odd.", "even|odd"),
        ("Town A is north of town B, and B is north of town C. Is C north of A?", "choice", "no", "No.", YES_NO),
        ("Which is longer: a day or a week?", "choice", "week", "A week is longer.", "week|day"),
        (
            "If it rains, the street gets wet. The street is dry. Is it raining?",
            "choice",
            "no",
            "No, it is not raining.",
            YES_NO,
        ),
        ("Zoe has fewer apples than Mia, and Li has fewer than Zoe. Who has the most apples?", "choice", "Mia", "Mia.", "Mia|Zoe|Li"),
        ("Which letter comes first in the alphabet: M or K?", "choice", "K", "K comes first.", "M|K"),
        ("Is 15 greater than 51?", "choice", "no", "No.", YES_NO),
        (
            "You face north and turn right by 90 degrees. Which direction do you face now? Answer in one word.",
            "choice",
            "east",
            "East",
            "north|east|south|west",
        ),
        (
            "A bicycle and a car start together on the same road; the car is faster. Which arrives first?",
            "choice",
            "car",
            "The car.",
            "car|bicycle",
        ),
        ("Which number is larger: 0.45 or 0.9?", "choice", "0.9", "0.9 is larger.", "0.9|0.45"),
        ("Which of these is a fruit: carrot or apple?", "choice", "apple", "Apple.", "carrot|apple"),
        ("Sam is older than Kim. Is Kim younger than Sam?", "choice", "yes", "Yes, Kim is younger.", YES_NO),
        ("A bag has 3 red balls and 5 blue balls. Are there more red or blue balls?", "choice", "blue", "Blue.", "red|blue"),
        (
            "I think of a number and add 3 to it, and the result is 10. Which number did I think of?" + NUMBER,
            "number",
            "7",
            "You thought of 7.",
        ),
        ("If today is Monday, what day is tomorrow?", "choice", "Tuesday", "Tuesday.", "Monday|Tuesday|Wednesday|Sunday"),
        (
            "Every bird in the cage is yellow, and Kiki is a bird in the cage. Is Kiki yellow?",
            "choice",
            "yes",
            "Yes.",
            YES_NO,
        ),
        (
            "Ice is colder than water, and water is colder than steam. Which is the hottest: ice, water or steam?",
            "choice",
            "steam",
            "Steam.",
            "ice|water|steam",
        ),
    ],
)

ONE_WORD = " Answer in one word."

LANGUAGE = _items(
    "language",
    [
        ('What is the opposite of "hot"?' + ONE_WORD, "answer", "cold", "Cold."),
        ('What is the plural of "mouse"?' + ONE_WORD, "answer", "mice", "mice"),
        ('What is the past tense of "go"?' + ONE_WORD, "answer", "went", "Went"),
        (
            'Give a synonym of "happy".' + ONE_WORD,
            "answer",
            "glad|joyful|cheerful|content|pleased|joyous|merry|delighted|jolly|elated|upbeat|thrilled|ecstatic|overjoyed",
            "Glad",
        ),
        ('What is the opposite of "up"?' + ONE_WORD, "answer", "down", "Down"),
        ('How many letters are in the word "apple"?' + NUMBER, "number", "5", 'The word "apple" has 5 letters.'),
        ('What is the first letter of the word "banana"?', "answer", "b", "The first letter is B."),
        ('Spell the word "cat" backwards. Answer with the word only.', "answer", "tac", "tac"),
        ('What is the opposite of "early"?' + ONE_WORD, "answer", "late", "Late"),
        ('Which of these words is a verb: "table", "blue" or "run"?', "choice", "run", '"Run" is the verb.', "run|blue|table"),
        ('Complete the sentence with one word: "The sun rises in the ___."', "answer", "east", "east"),
        ('What is the plural of "child"?' + ONE_WORD, "answer", "children", "Children"),
        ('What is the comparative form of "big"?' + ONE_WORD, "answer", "bigger", "bigger"),
        ('What does the Spanish word "gracias" mean in English?', "answer", "thank you|thanks", "Thank you."),
        ("What do you call a baby cat?" + ONE_WORD, "answer", "kitten|kitty", "Kitten"),
        ('Which word rhymes with "cat": "dog" or "hat"?', "choice", "hat", '"Hat" rhymes with "cat".', "hat|dog"),
        ('What is the opposite of "full"?' + ONE_WORD, "answer", "empty", "Empty."),
        ('How many syllables does the word "banana" have?' + NUMBER, "number", "3", "Ba-na-na has 3 syllables."),
        ('Which spelling is correct: "recieve" or "receive"?', "choice", "receive", '"Receive" is correct.', "recieve|receive"),
        ('What is the past tense of "eat"?' + ONE_WORD, "answer", "ate", "Ate"),
    ],
)

INSTRUCTIONS = _items(
    "instructions",
    [
        ("Name a colour." + ONE_WORD, "one_word", "", "Blue"),
        ("What is your favourite season? Reply in uppercase letters only.", "uppercase", "", "SUMMER, BECAUSE IT IS WARM."),
        ('List three fruits as a bulleted list, one per line, each line starting with "-".', "list", "3", "- apple\n- banana\n- cherry"),
        ("Write one sentence about the sea in lowercase letters only.", "lowercase", "", "the sea is calm and blue today."),
        ("Describe a cat in at most five words.", "max_words", "5", "A small, furry, curious pet."),
        ('Is water wet? Start your answer with the word "Yes".', "starts_with", "Yes", "Yes, water is wet."),
        ('Write a short greeting that ends with the word "friend".', "ends_with", "friend", "Hello there, my friend!"),
        ('Name two animals, and make sure your answer includes the word "dog".', "contains", "dog", "A dog and a cat."),
        ('Describe the weather without using the letter "e".', "excludes", "e", "Sunny and warm."),
        (
            'Give a JSON object with the keys "name" and "age" for a made-up person. Reply with the JSON only.',
            "json",
            "name,age",
            '{"name": "Ana", "age": 30}',
        ),
        ("What is your favourite food? Put your whole answer in double quotes.", "quoted", "", '"Pizza, with lots of cheese."'),
        ("List four colours as a numbered list (1., 2., 3., 4.), one per line.", "list", "4", "1. red\n2. blue\n3. green\n4. yellow"),
        ('Which animal says "moo"? Reply with exactly one word.', "one_word", "cow|cows", "Cow"),
        ('Reply with "OK" and nothing else.', "one_word", "ok", "OK"),
        ("What do bees make? Answer in at most three words.", "max_words", "3", "Honey."),
        ("Write one word in uppercase letters that describes the sun.", "uppercase", "", "BRIGHT"),
        ('Name two fruits without using the word "apple".', "excludes", "apple", "Banana and mango."),
        ("What is the capital of Italy? Write your answer in lowercase letters only.", "lowercase", "", "rome"),
        ("Ask me a question about my day. End your reply with a question mark.", "ends_with", "?", "How was your day?"),
        ('List two vegetables as a bulleted list, one per line, each line starting with "-".', "list", "2", "- carrot\n- pea"),
    ],
)

CATEGORIES = ("facts", "arithmetic", "reasoning", "language", "instructions")
ITEMS: tuple[ProbeItem, ...] = tuple(
    item for group in zip(FACTS, ARITHMETIC, REASONING, LANGUAGE, INSTRUCTIONS, strict=True) for item in group
)  # round-robin over the categories


def probe_rows(split: str) -> list[dict]:
    """The probe as rows (``bundled:general-probe``); only the ``test`` split exists."""
    if split != "test":
        raise RlftError(
            f"bundled:general-probe has no {split!r} split: it is a probe of general ability, never trained on",
            fix="score it in an eval stage (probe: {} or forgetting: {max_drop: 0.05}), or read split: test",
        )
    return [
        {
            "prompt": [{"role": "user", "content": item.question}],
            "category": item.category,
            "check": item.check,
            "reference": item.reference,
            "options": item.options,
        }
        for item in ITEMS
    ]
