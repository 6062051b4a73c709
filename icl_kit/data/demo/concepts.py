"""The demo world's knowledge table: concepts, how they look, and facts about them.

Each concept belongs to a category, is drawn as one shape in two colours, and
carries three facts (one per knowledge question type). A fact is
`(canonical answer, variants annotators also give, plausible wrong answers)`;
variants produce annotator disagreement, wrong answers feed the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

Fact = tuple[str, tuple[str, ...], tuple[str, ...]]

# Question types, in a fixed order: three visual, three needing outside knowledge.
VISUAL_TYPES: tuple[str, ...] = ("color", "count", "object")
KNOWLEDGE_TYPES: tuple[str, ...] = ("kb_property", "kb_use", "kb_place")
QUESTION_TYPES: tuple[str, ...] = VISUAL_TYPES + KNOWLEDGE_TYPES


@dataclass(frozen=True)
class Concept:
    """One kind of object in the demo world."""

    name: str
    plural: str
    category: str
    shape: str
    colors: tuple[str, str]  # (primary, secondary) colour names, keys of PALETTE
    synonyms: tuple[str, ...]
    facts: dict[str, Fact]  # question type -> fact


# Colour names -> RGB. The primary colour is also the answer to "what color".
PALETTE: dict[str, tuple[int, int, int]] = {
    "yellow": (236, 208, 40), "red": (200, 30, 35), "orange": (240, 135, 20),
    "green": (60, 150, 50), "purple": (110, 45, 130), "brown": (120, 75, 35),
    "white": (245, 245, 240), "black": (25, 25, 25), "gray": (128, 128, 128),
    "blue": (40, 80, 190), "pink": (235, 120, 170), "tan": (205, 170, 110),
    "silver": (190, 195, 200), "dark green": (25, 90, 40),
}  # fmt: skip

# Colours annotators give instead of the drawn one (disagreement on "what color").
COLOR_VARIANTS: dict[str, tuple[str, ...]] = {
    "yellow": ("gold", "light yellow"), "red": ("dark red", "maroon"), "orange": ("red", "yellow"),
    "green": ("light green", "lime"), "purple": ("violet", "dark purple"), "brown": ("tan", "dark brown"),
    "white": ("off white", "cream"), "black": ("dark", "gray"), "gray": ("grey", "silver"),
    "blue": ("navy", "dark blue"), "pink": ("red", "light pink"), "tan": ("beige", "brown"),
    "silver": ("gray", "grey"), "dark green": ("green", "olive"),
}  # fmt: skip

# Words used in question templates per category.
CATEGORY_WORDS: dict[str, str] = {"fruit": "fruit", "vehicle": "vehicle", "animal": "animal",
                                  "object": "object"}

# Question templates: type -> category -> paraphrases. `{cat}` is the category
# word, `{plural}` the concept's plural (count questions only).
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "color": {c: ("What color is the {cat}?", "What is the color of this {cat}?") for c in CATEGORY_WORDS},
    "count": {c: ("How many {plural} are there?", "How many {plural} are in the picture?")
              for c in CATEGORY_WORDS},
    "object": {c: ("What kind of {cat} is this?", "What is this {cat} called?") for c in CATEGORY_WORDS},
    "kb_property": {
        "fruit": ("What vitamin or mineral is this fruit rich in?", "What nutrient is this fruit known for?"),
        "vehicle": ("What does this vehicle usually carry?", "What is usually carried in this vehicle?"),
        "animal": ("What does this animal eat?", "What food does this animal usually eat?"),
        "object": ("What is this object made of?", "What material is this made from?"),
    },
    "kb_use": {
        "fruit": ("What is this fruit often used to make?", "What can you make with this fruit?"),
        "vehicle": ("What is this vehicle used for?", "What job does this vehicle do?"),
        "animal": ("What is this animal known for?", "What do people get from this animal?"),
        "object": ("What is this object used for?", "Why would someone use this?"),
    },
    "kb_place": {
        "fruit": ("Where does this fruit grow?", "In what kind of place is this fruit grown?"),
        "vehicle": ("Where would you usually see this vehicle?", "Where is this vehicle usually parked?"),
        "animal": ("Where does this animal live?", "What is the natural home of this animal?"),
        "object": ("Where would you usually find this?", "Where is this object commonly used?"),
    },
}


def _c(name: str, plural: str, category: str, shape: str, colors: tuple[str, str],
       synonyms: tuple[str, ...], prop: Fact, use: Fact, place: Fact) -> Concept:
    facts = {"kb_property": prop, "kb_use": use, "kb_place": place}
    return Concept(name, plural, category, shape, colors, synonyms, facts)


CONCEPTS: tuple[Concept, ...] = (
    # ---------------------------------------------------------------- fruit
    _c("banana", "bananas", "fruit", "crescent", ("yellow", "brown"), ("bananas", "plantain"),
       ("potassium", ("potasium", "vitamin b6"), ("calcium", "iron", "vitamin c")),
       ("banana bread", ("smoothie", "bread"), ("pie", "jam", "juice")),
       ("tropics", ("tropical", "jungle"), ("orchard", "vineyard", "desert"))),
    _c("apple", "apples", "fruit", "circle", ("red", "green"), ("apples", "red apple"),
       ("fiber", ("fibre", "vitamin c"), ("potassium", "protein", "iron")),
       ("pie", ("apple pie", "cider"), ("wine", "jam", "bread")),
       ("orchard", ("tree", "orchards"), ("tropics", "vineyard", "desert"))),
    _c("orange", "oranges", "fruit", "dimpled", ("orange", "green"), ("oranges", "tangerine"),
       ("vitamin c", ("vitamin", "c"), ("potassium", "iron", "fiber")),
       ("juice", ("orange juice", "marmalade"), ("wine", "pie", "bread")),
       ("florida", ("california", "grove"), ("vineyard", "desert", "orchard"))),
    _c("lemon", "lemons", "fruit", "ellipse", ("yellow", "green"), ("lemons", "lime"),
       ("vitamin c", ("citric acid", "vitamin"), ("potassium", "iron", "protein")),
       ("lemonade", ("lemon juice", "tea"), ("wine", "pie", "jam")),
       ("mediterranean", ("italy", "tree"), ("tropics", "vineyard", "desert"))),
    _c("grapes", "grapes", "fruit", "cluster", ("purple", "green"), ("grape", "red grapes"),
       ("antioxidants", ("sugar", "resveratrol"), ("potassium", "vitamin c", "fiber")),
       ("wine", ("raisins", "juice"), ("pie", "bread", "lemonade")),
       ("vineyard", ("vine", "france"), ("tropics", "orchard", "desert"))),
    _c("strawberry", "strawberries", "fruit", "triangle", ("red", "dark green"), ("strawberries", "berry"),
       ("vitamin c", ("vitamins", "fiber"), ("potassium", "iron", "calcium")),
       ("jam", ("shortcake", "smoothie"), ("wine", "bread", "cider")),
       ("field", ("garden", "farm"), ("tropics", "vineyard", "orchard"))),
    # -------------------------------------------------------------- vehicle
    _c("fire truck", "fire trucks", "vehicle", "truck", ("red", "silver"), ("firetruck", "fire engine"),
       ("water", ("hoses", "ladder"), ("passengers", "students", "cargo")),
       ("fighting fires", ("firefighting", "fire"), ("transportation", "farming", "fishing")),
       ("fire station", ("firehouse", "station"), ("school", "farm", "airport"))),
    _c("school bus", "school buses", "vehicle", "bus", ("yellow", "black"), ("bus", "schoolbus"),
       ("children", ("kids", "students"), ("water", "patients", "cargo")),
       ("transporting students", ("school", "transportation"), ("fighting fires", "farming", "fishing")),
       ("school", ("parking lot", "street"), ("fire station", "hospital", "farm"))),
    _c("taxi", "taxis", "vehicle", "car", ("yellow", "black"), ("cab", "taxi cab"),
       ("passengers", ("people", "tourists"), ("water", "children", "hay")),
       ("transportation", ("rides", "taxi service"), ("fighting fires", "farming", "racing")),
       ("city", ("new york", "street"), ("farm", "fire station", "school"))),
    _c("ambulance", "ambulances", "vehicle", "van", ("white", "red"), ("ambulances", "emt"),
       ("patients", ("sick people", "injured people"), ("water", "children", "cargo")),
       ("emergencies", ("emergency", "medical emergencies"), ("farming", "fishing", "racing")),
       ("hospital", ("emergency room", "street"), ("farm", "school", "airport"))),
    _c("tractor", "tractors", "vehicle", "tractor", ("green", "yellow"), ("tractors", "john deere"),
       ("hay", ("crops", "farmer"), ("passengers", "patients", "children")),
       ("farming", ("plowing", "farm work"), ("transportation", "fighting fires", "racing")),
       ("farm", ("field", "barn"), ("city", "school", "hospital"))),
    _c("boat", "boats", "vehicle", "boat", ("blue", "white"), ("boats", "ship"),
       ("fish", ("fishermen", "people"), ("patients", "children", "hay")),
       ("fishing", ("sailing", "transportation"), ("farming", "fighting fires", "racing")),
       ("lake", ("ocean", "harbor"), ("farm", "school", "city"))),
    # --------------------------------------------------------------- animal
    _c("cow", "cows", "animal", "spotted_animal", ("white", "black"), ("cows", "cattle"),
       ("grass", ("hay", "grain"), ("meat", "fish", "leaves")),
       ("milk", ("beef", "dairy"), ("wool", "ivory", "stripes")),
       ("farm", ("pasture", "field"), ("africa", "forest", "ocean"))),
    _c("elephant", "elephants", "animal", "big_animal", ("gray", "white"), ("elephants", "pachyderm"),
       ("plants", ("grass", "peanuts"), ("meat", "fish", "honey")),
       ("ivory", ("tusks", "trunk"), ("milk", "wool", "stripes")),
       ("africa", ("india", "savanna"), ("farm", "forest", "arctic"))),
    _c("giraffe", "giraffes", "animal", "tall_animal", ("tan", "brown"), ("giraffes", "giraffe herd"),
       ("leaves", ("acacia", "trees"), ("meat", "fish", "grass")),
       ("long neck", ("neck", "height"), ("milk", "wool", "ivory")),
       ("africa", ("savanna", "zoo"), ("farm", "forest", "arctic"))),
    _c("zebra", "zebras", "animal", "striped_animal", ("white", "black"), ("zebras", "horse"),
       ("grass", ("plants", "hay"), ("meat", "fish", "leaves")),
       ("stripes", ("black and white", "stripe"), ("milk", "wool", "ivory")),
       ("africa", ("savanna", "zoo"), ("farm", "forest", "arctic"))),
    _c("bear", "bears", "animal", "round_animal", ("brown", "black"), ("bears", "grizzly"),
       ("fish", ("honey", "berries"), ("grass", "hay", "leaves")),
       ("hibernation", ("hibernating", "strength"), ("milk", "wool", "stripes")),
       ("forest", ("woods", "alaska"), ("farm", "africa", "ocean"))),
    _c("sheep", "sheep", "animal", "fluffy_animal", ("white", "black"), ("lamb", "ram"),
       ("grass", ("hay", "clover"), ("meat", "fish", "leaves")),
       ("wool", ("lamb", "sweaters"), ("milk", "ivory", "stripes")),
       ("farm", ("meadow", "new zealand"), ("africa", "forest", "ocean"))),
    # --------------------------------------------------------------- object
    _c("umbrella", "umbrellas", "object", "umbrella", ("blue", "black"), ("umbrellas", "parasol"),
       ("nylon", ("fabric", "polyester"), ("wood", "paper", "steel")),
       ("rain", ("keeping dry", "shade"), ("telling time", "flying", "eating")),
       ("beach", ("rain", "outside"), ("kitchen", "intersection", "tennis court"))),
    _c("kite", "kites", "object", "diamond", ("pink", "blue"), ("kites", "flying kite"),
       ("paper", ("plastic", "nylon"), ("wood", "steel", "glass")),
       ("flying", ("fun", "wind"), ("telling time", "rain", "eating")),
       ("park", ("beach", "sky"), ("kitchen", "intersection", "wall"))),
    _c("pizza", "pizzas", "object", "pizza", ("tan", "red"), ("pizzas", "pie"),
       ("dough", ("cheese", "flour"), ("wood", "plastic", "steel")),
       ("eating", ("dinner", "food"), ("telling time", "flying", "rain")),
       ("italy", ("restaurant", "pizzeria"), ("beach", "intersection", "wall"))),
    _c("clock", "clocks", "object", "clock", ("white", "black"), ("clocks", "wall clock"),
       ("metal", ("plastic", "glass"), ("paper", "nylon", "dough")),
       ("telling time", ("time", "time keeping"), ("flying", "rain", "eating")),
       ("wall", ("tower", "kitchen"), ("beach", "park", "tennis court"))),
    _c("stop sign", "stop signs", "object", "octagon", ("red", "white"), ("sign", "stopsign"),
       ("metal", ("aluminum", "steel"), ("paper", "nylon", "wood")),
       ("traffic", ("stopping", "safety"), ("flying", "rain", "telling time")),
       ("intersection", ("street", "corner"), ("beach", "kitchen", "park"))),
    _c("tennis racket", "tennis rackets", "object", "racket", ("green", "black"), ("racket", "racquet"),
       ("graphite", ("carbon", "strings"), ("paper", "dough", "glass")),
       ("tennis", ("hitting ball", "playing tennis"), ("flying", "rain", "telling time")),
       ("tennis court", ("court", "club"), ("kitchen", "intersection", "wall"))),
)



def fact_answers(concept: Concept, qtype: str, count: int) -> Fact:
    """(canonical answer, annotator variants, plausible wrong answers) of one question."""
    if qtype in concept.facts:
        return concept.facts[qtype]
    if qtype == "color":
        primary = concept.colors[0]
        wrong = tuple(c for c in ("red", "blue", "green", "yellow", "white", "black") if c != primary)
        return primary, COLOR_VARIANTS[primary], wrong[:3]
    if qtype == "count":
        near = tuple(str(n) for n in (count + 1, count - 1) if n >= 1)
        words = ("one", "two", "three", "four", "five", "six")
        return str(count), (words[count - 1],) + near, tuple(str(n) for n in range(1, 7) if n != count)[:3]
    if qtype == "object":
        others = [c.name for c in CONCEPTS if c.category == concept.category and c.name != concept.name]
        return concept.name, concept.synonyms, tuple(others[:3])
    raise KeyError(qtype)
