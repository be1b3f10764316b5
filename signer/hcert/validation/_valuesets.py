"""EU DCC value sets: code -> active flag, one mapping per coded field (PAYLOAD.md "Value sets").

GENERATED from ehn-dcc-development/eu-dcc-valuesets release 2.12.0 (commit 60ea3d8) on 2026-11-26;
do not edit by hand - regenerate from a newer release instead, and update the release named here
and in ``VALUESETS_RELEASE``. ``active: false`` marks a deprecated code: verifiers keep accepting
it, issuers should not issue it (ValidationPolicy.deprecated_codes decides).

``TEST_MANF`` is the repository's EXAMPLE snapshot of the JRC/HSC rapid-antigen-test list
(2021-07-01, 88 devices); the leading list is the one distributed by the EU DCC Gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

VALUESETS_RELEASE: Final = "eu-dcc-valuesets 2.12.0 (60ea3d8)"

# tg (v, t, r): disease-agent-targeted.json
# valueSetId disease-agent-targeted, valueSetDate 2021-04-27
DISEASE_AGENT_TARGETED: Final[Mapping[str, bool]] = {
    "840539006": True,  # COVID-19
}

# v/vp: vaccine-prophylaxis.json
# valueSetId sct-vaccines-covid-19, valueSetDate 2023-01-25
VACCINE_PROPHYLAXIS: Final[Mapping[str, bool]] = {
    "1119305005": True,  # SARS-CoV-2 antigen vaccine
    "1119349007": True,  # SARS-CoV-2 mRNA vaccine
    "J07BX03": False,  # covid-19 vaccines (deprecated)
    "1162643001": True,  # SARS-CoV-2 recombinant spike protein antigen vaccine
    "1157024006": True,  # Inactivated whole SARS-CoV-2 antigen vaccine
    "29061000087103": True,  # COVID-19 non-replicating viral vector vaccine
    "28531000087107": True,  # COVID-19 vaccine
    "30141000087107": True,  # SARS-CoV-2 virus-like particle antigen vaccine
    "1187593009": True,  # SARS-CoV-2 DNA plasmid encoding spike protein vaccine
}

# v/mp: vaccine-medicinal-product.json
# valueSetId vaccines-covid-19-names, valueSetDate 2022-11-30
VACCINE_MEDICINAL_PRODUCT: Final[Mapping[str, bool]] = {
    "EU/1/20/1528": True,  # Comirnaty
    "EU/1/20/1507": True,  # Spikevax
    "EU/1/21/1529": True,  # Vaxzevria
    "EU/1/20/1525": True,  # Jcovden
    "CVnCoV": True,  # CVnCoV
    "NVX-CoV2373": False,  # NVX-CoV2373 (deprecated)
    "Sputnik-V": True,  # Sputnik-V
    "Convidecia": True,  # Convidecia
    "EpiVacCorona": True,  # EpiVacCorona
    "BBIBP-CorV": True,  # BBIBP-CorV
    "Inactivated-SARS-CoV-2-Vero-Cell": False,  # Inactivated SARS-CoV-2 (Vero Cell) (depr…
    "CoronaVac": True,  # CoronaVac
    "Covaxin": True,  # Covaxin
    "Covishield": True,  # Covishield
    "Covid-19-recombinant": True,  # Covid-19 (recombinant)
    "R-COVI": True,  # R-COVI
    "CoviVac": True,  # CoviVac
    "Sputnik-Light": True,  # Sputnik Light
    "Hayat-Vax": True,  # Hayat-Vax
    "Abdala": True,  # Abdala
    "WIBP-CorV": True,  # WIBP-CorV
    "MVC-COV1901": True,  # MVC COVID-19 vaccine
    "EU/1/21/1618": True,  # Nuvaxovid
    "Covovax": True,  # Covovax
    "Vidprevtyn": False,  # Vidprevtyn (deprecated)
    "VLA2001": False,  # VLA2001 (deprecated)
    "EpiVacCorona-N": True,  # EpiVacCorona-N
    "Sputnik-M": True,  # Sputnik M
    "Covid-19-adsorvida-inativada": True,  # Vacina adsorvida covid-19 (inativada)
    "NVSI-06-08": True,  # NVSI-06-08
    "YS-SC2-010": True,  # YS-SC2-010
    "SCTV01C": True,  # SCTV01C
    "Covifenz": True,  # Covifenz
    "AZD2816": True,  # AZD2816
    "Soberana-02": True,  # Soberana 02
    "Soberana-Plus": True,  # Soberana Plus
    "EU/1/21/1624": True,  # COVID-19 Vaccine Valneva
    "EU/1/21/1580": True,  # VidPrevtyn Beta
    "EU/1/22/1709": True,  # Bimervax
}

# v/ma: vaccine-mah-manf.json
# valueSetId vaccines-covid-19-auth-holders, valueSetDate 2022-01-26
VACCINE_MAH_MANF: Final[Mapping[str, bool]] = {
    "ORG-100001699": True,  # AstraZeneca AB
    "ORG-100030215": True,  # Biontech Manufacturing GmbH
    "ORG-100001417": True,  # Janssen-Cilag International
    "ORG-100031184": True,  # Moderna Biotech Spain S.L.
    "ORG-100006270": True,  # Curevac AG
    "ORG-100013793": True,  # CanSino Biologics
    "ORG-100020693": True,  # China Sinopharm International Corp. - Beijing location
    "ORG-100010771": True,  # Sinopharm Weiqida Europe Pharmaceutical s.r.o. - Prague loca…
    "ORG-100024420": True,  # Sinopharm Zhijun (Shenzhen) Pharmaceutical Co. Ltd. - Shenzh…
    "ORG-100032020": True,  # Novavax CZ a.s.
    "Gamaleya-Research-Institute": True,  # Gamaleya Research Institute
    "Vector-Institute": True,  # Vector Institute
    "Sinovac-Biotech": True,  # Sinovac Biotech
    "Bharat-Biotech": True,  # Bharat Biotech
    "ORG-100001981": True,  # Serum Institute Of India Private Limited
    "Fiocruz": True,  # Fiocruz
    "ORG-100007893": True,  # R-Pharm CJSC
    "Chumakov-Federal-Scientific-Center": True,  # Chumakov Federal Scientific Center for …
    "ORG-100023050": True,  # Gulf Pharmaceutical Industries
    "CIGB": True,  # Center for Genetic Engineering and Biotechnology
    "Sinopharm-WIBP": True,  # Sinopharm - Wuhan Institute of Biological Products
    "ORG-100033914": True,  # Medigen Vaccine Biologics Corporation
    "ORG-100000788": True,  # Sanofi Pasteur
    "ORG-100036422": True,  # Valneva France
    "Instituto-Butantan": True,  # Instituto Butantan
    "NVSI": True,  # National Vaccine and Serum Institute, China
    "Yisheng-Biopharma": True,  # Yisheng Biopharma
    "ORG-100026614": True,  # Sinocelltech Ltd.
    "ORG-100008549": True,  # Medicago Inc.
    "Finlay-Institute": True,  # Finlay Institute of Vaccines
    "ORG-100036914": True,  # Hipra Human Health S.L.
}

# t/tt: test-type.json
# valueSetId covid-19-lab-test-type, valueSetDate 2021-04-27
TEST_TYPE: Final[Mapping[str, bool]] = {
    "LP6464-4": True,  # Nucleic acid amplification with probe detection
    "LP217198-3": True,  # Rapid immunoassay
}

# t/tr: test-result.json
# valueSetId covid-19-lab-result, valueSetDate 2021-04-27
TEST_RESULT: Final[Mapping[str, bool]] = {
    "260415000": True,  # Not detected
    "260373001": True,  # Detected
}

# t/ma: test-manf-example.json
# valueSetId covid-19-lab-test-manufacturer-and-name, valueSetDate 2021-07-01
TEST_MANF: Final[Mapping[str, bool]] = {
    "1833": True,  # AAZ-LMB, COVID-VIRO
    "1232": True,  # Abbott Rapid Diagnostics, Panbio COVID-19 Ag Rapid Test
    "1468": True,  # ACON Laboratories, Inc, Flowflex SARS-CoV-2 Antigen rapid test
    "2108": True,  # AESKU.DIAGNOSTICS GmbH & Co. KG, AESKU.RAPID SARS-CoV-2
    "2130": True,  # Affimedix, Inc., TestNOW® - COVID-19 Antigen Test
    "1304": True,  # AMEDA Labordiagnostik GmbH, AMP Rapid Test SARS-CoV-2 Ag
    "1822": True,  # Anbio (Xiamen) Biotechnology Co., Ltd, Rapid COVID-19 Antigen Test(Co…
    "1815": True,  # Anhui Deep Blue Medical Technology Co., Ltd, COVID-19 (SARS-CoV-2) An…
    "1736": True,  # Anhui Deep Blue Medical Technology Co., Ltd, COVID-19 (SARS-CoV-2) An…
    "768": True,  # ArcDia International Ltd, mariPOC SARS-CoV-2
    "1654": True,  # Asan Pharmaceutical CO., LTD, Asan Easy Test COVID-19 Ag
    "2010": True,  # Atlas Link Technology Co., Ltd., NOVA Test® SARS-CoV-2 Antigen Rapid …
    "2101": True,  # AXIOM Gesellschaft für Diagnostica und Biochemica mbH, COVID-19 Antig…
    "1906": True,  # Azure Biotech Inc, COVID-19 Antigen Rapid Test Device
    "1065": False,  # Becton Dickinson, BD Veritor™ System for Rapid Detection of SARS CoV 2
    "1870": True,  # Beijing Hotgen Biotech Co., Ltd, Novel Coronavirus 2019-nCoV Antigen …
    "1331": True,  # Beijing Lepu Medical Technology Co., Ltd, SARS-CoV-2 Antigen Rapid Te…
    "1484": True,  # Beijing Wantai Biological Pharmacy Enterprise Co., Ltd, Wantai SARS-C…
    "1242": False,  # Bionote, Inc, NowCheck COVID-19 Ag Test
    "1223": True,  # BIOSYNEX S.A., BIOSYNEX COVID-19 Ag BSS
    "1236": True,  # BTNX Inc, Rapid Response COVID-19 Antigen Rapid Test
    "1173": True,  # CerTest Biotec, CerTest SARS-CoV-2 Card test
    "1919": True,  # Core Technology Co., Ltd, Coretests COVID-19 Ag Test
    "1225": True,  # DDS DIAGNOSTIC, Test Rapid Covid-19 Antigen (tampon nazofaringian)
    "1375": True,  # DIALAB GmbH, DIAQUICK COVID-19 Ag Cassette
    "1244": True,  # GenBody, Inc, Genbody COVID-19 Ag Test
    "1253": True,  # GenSure Biotech Inc, GenSure COVID-19 Antigen Rapid Kit
    "2183": True,  # Getein Biotech, Inc., One Step Test for SARS-CoV-2 Antigen (Colloidal…
    "1144": True,  # Green Cross Medical Science Corp., GENEDIA W COVID-19 Ag
    "1747": True,  # Guangdong Hecin Scientific, Inc., 2019-nCoV Antigen Test Kit (colloid…
    "1360": True,  # Guangdong Wesail Biotech Co., Ltd, COVID-19 Ag Test Kit
    "1437": True,  # Guangzhou Wondfo Biotech Co., Ltd, Wondfo 2019-nCoV Antigen Test (Lat…
    "1257": True,  # Hangzhou AllTest Biotech Co., Ltd, COVID-19 Antigen Rapid Test
    "1363": True,  # Hangzhou Clongene Biotech Co., Ltd, Covid-19 Antigen Rapid Test Kit
    "1365": True,  # Hangzhou Clongene Biotech Co., Ltd, COVID-19/Influenza A+B Antigen Co…
    "1844": True,  # Hangzhou Immuno Biotech Co.,Ltd, Immunobio SARS-CoV-2 Antigen ANTERIO…
    "1215": True,  # Hangzhou Laihe Biotech Co., Ltd, LYHER Novel Coronavirus (COVID-19) A…
    "2139": True,  # HANGZHOU LYSUN BIOTECHNOLOGY CO., LTD., COVID-19 Antigen Rapid Test D…
    "1392": True,  # Hangzhou Testsea Biotechnology Co., Ltd, COVID-19 Antigen Test Cassette
    "1767": True,  # Healgen Scientific, Coronavirus Ag Rapid Test Cassette
    "1263": True,  # Humasis, Humasis COVID-19 Ag Test
    "1333": True,  # Joinstar Biomedical Technology Co., Ltd, COVID-19 Rapid Antigen Test …
    "1764": True,  # JOYSBIO (Tianjin) Biotechnology Co., Ltd, SARS-CoV-2 Antigen Rapid Te…
    "1266": True,  # Labnovation Technologies Inc, SARS-CoV-2 Antigen Rapid Test Kit
    "2128": True,  # Lumigenex (Suzhou) Co., Ltd, PocRoc®SARS-CoV-2 Antigen Rapid Test Kit…
    "1267": True,  # LumiQuick Diagnostics Inc, QuickProfile COVID-19 Antigen Test
    "1268": True,  # LumiraDX, LumiraDx SARS-CoV-2 Ag Test
    "1180": True,  # MEDsan GmbH, MEDsan SARS-CoV-2 Antigen Rapid Test
    "2029": True,  # Merlin Biomedical (Xiamen) Co., Ltd., SARS-CoV-2 Antigen Rapid Test C…
    "1190": True,  # möLab, mö-screen Corona Antigen Test
    "1481": True,  # MP Biomedicals, Rapid SARS-CoV-2 Antigen Test Card
    "2104": True,  # Nal von minden GmbH, NADAL COVID -19 Ag +Influenza A/B Test
    "1162": True,  # Nal von minden GmbH, NADAL COVID-19 Ag Test
    "1420": True,  # NanoEntek, FREND COVID-19 Ag
    "1501": True,  # New Gene (Hangzhou) Bioengineering Co., Ltd, COVID-19 Antigen Detecti…
    "1199": True,  # Oncosem Onkolojik Sistemler San. ve Tic. A.S., CAT
    "308": True,  # PCL Inc, PCL COVID19 Ag Rapid FIA
    "2116": True,  # PerGrande BioTech Development Co., Ltd., SARS-CoV-2 Antigen Detection…
    "1271": True,  # Precision Biosensor, Inc, Exdia COVID-19 Ag
    "1341": True,  # Qingdao Hightop Biotech Co., Ltd, SARS-CoV-2 Antigen Rapid Test (Immu…
    "1097": True,  # Quidel Corporation, Sofia SARS Antigen FIA
    "1606": True,  # RapiGEN Inc, BIOCREDIT COVID-19 Ag - SARS-CoV 2 Antigen test
    "1604": True,  # Roche (SD BIOSENSOR), SARS-CoV-2 Rapid Antigen Test
    "1489": True,  # Safecare Biotech (Hangzhou) Co. Ltd, COVID-19 Antigen Rapid Test Kit …
    "1490": True,  # Safecare Biotech (Hangzhou) Co. Ltd, Multi-Respiratory Virus Antigen …
    "1201": True,  # ScheBo Biotech AG, ScheBo SARS CoV-2 Quick Antigen
    "344": True,  # SD BIOSENSOR Inc, STANDARD F COVID-19 Ag FIA
    "345": True,  # SD BIOSENSOR Inc, STANDARD Q COVID-19 Ag Test
    "1319": True,  # SGA Medikal, V-Chek SARS-CoV-2 Ag Rapid Test Kit (Colloidal Gold)
    "2109": True,  # Shenzhen Lvshiyuan Biotechnology Co., Ltd., Green Spring SARS-CoV-2 A…
    "2017": True,  # Shenzhen Ultra-Diagnostics Biotec.Co.,Ltd, SARS-CoV-2 Antigen Test Kit
    "1769": True,  # Shenzhen Watmind Medical Co., Ltd, SARS-CoV-2 Ag Diagnostic Test Kit …
    "1574": True,  # Shenzhen Zhenrui Biotechnology Co., Ltd, Zhenrui ®COVID-19 Antigen Te…
    "1218": True,  # Siemens Healthineers, CLINITEST Rapid Covid-19 Antigen Test
    "1114": True,  # Sugentech, Inc, SGTi-flex COVID-19 Ag
    "1466": True,  # TODA PHARMA, TODA CORONADIAG Ag
    "1934": True,  # Tody Laboratories Int., Coronavirus (SARS-CoV 2) Antigen - Oral Fluid
    "2074": True,  # Triplex International Biosciences (China) Co., LTD., SARS-CoV-2 Antig…
    "1443": True,  # Vitrosens Biotechnology Co., Ltd, RapidFor SARS-CoV-2 Rapid Ag Test
    "2103": True,  # VivaChek Biotech (Hangzhou) Co., Ltd, VivaDiag Pro SARS-CoV-2 Ag Rapi…
    "2098": True,  # Wuhan EasyDiagnosis Biomedicine Co., Ltd., COVID-19 (SARS-CoV-2) Anti…
    "1763": True,  # Xiamen AmonMed Biotechnology Co., Ltd, COVID-19 Antigen Rapid Test Ki…
    "1278": True,  # Xiamen Boson Biotech Co. Ltd, Rapid SARS-CoV-2 Antigen Test Card
    "1456": True,  # Xiamen Wiz Biotech Co., Ltd, SARS-CoV-2 Antigen Rapid Test
    "1884": True,  # Xiamen Wiz Biotech Co., Ltd, SARS-CoV-2 Antigen Rapid Test (Colloidal…
    "1296": True,  # Zhejiang Anji Saianfu Biotech Co., Ltd, AndLucky COVID-19 Antigen Rap…
    "1295": True,  # Zhejiang Anji Saianfu Biotech Co., Ltd, reOpenTest COVID-19 Antigen R…
    "1343": True,  # Zhezhiang Orient Gene Biotech Co., Ltd, Coronavirus Ag Rapid Test Cas…
}

# co (v, t, r); UVCI country: country-2-codes.json
# valueSetId country-2-codes, valueSetDate 2019-11-01
_COUNTRY_CODES_TEXT: Final = (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS XK YE YT ZA ZM ZW "
)
COUNTRY_2_CODES: Final[Mapping[str, bool]] = dict.fromkeys(_COUNTRY_CODES_TEXT.split(), True)
