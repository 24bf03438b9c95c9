<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="de_DE" sourcelanguage="en">
<context>
    <name>AccessDialog</name>
    <message>
        <location filename="../dialogs.py" line="91"/>
        <source>Remote access</source>
        <translation>Fernzugriff</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="107"/>
        <source>Until a time I choose</source>
        <translation>Endzeit selbst wählen</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="108"/>
        <source>How long</source>
        <translation>Dauer</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="114"/>
        <source>End time</source>
        <translation>Endzeit</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="116"/>
        <source>How long:</source>
        <translation>Dauer:</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="122"/>
        <source>Apply</source>
        <translation>Übernehmen</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="123"/>
        <source>Cancel</source>
        <translation>Abbrechen</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="168"/>
        <source>The agent did not apply this level. Please try again.</source>
        <translation>Der Agent hat diese Zugriffsstufe nicht übernommen. Bitte versuchen Sie es erneut.</translation>
    </message>
    <message>
        <location filename="../models.py" line="196"/>
        <source>No remote access, except a session you confirm by its ID.</source>
        <translation>Kein Fernzugriff, außer für eine Sitzung, die Sie mit ihrer Sitzungs-ID bestätigen.</translation>
    </message>
    <message>
        <location filename="../models.py" line="198"/>
        <source>Limited remote service until the time you choose. Examinations are possible.</source>
        <translation>Eingeschränkte Fernwartung bis zum gewählten Zeitpunkt. Untersuchungen sind möglich.</translation>
    </message>
    <message>
        <location filename="../models.py" line="201"/>
        <source>Limited remote service with no end time. Examinations are possible.</source>
        <translation>Eingeschränkte Fernwartung ohne Endzeit. Untersuchungen sind möglich.</translation>
    </message>
    <message>
        <location filename="../models.py" line="203"/>
        <source>Examinations are not possible while a remote session is active.</source>
        <translation>Während einer Fernwartungssitzung sind keine Untersuchungen möglich.</translation>
    </message>
    <message>
        <location filename="../models.py" line="214"/>
        <source>Limited access, set by {who} at {when}, until {until} ({left} left)</source>
        <translation>Eingeschränkter Zugriff von {when} bis {until} (noch {left}), eingestellt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="218"/>
        <source>Limited access, set by {who} at {when}, with no end time</source>
        <translation>Eingeschränkter Zugriff seit {when}, ohne Endzeit, eingestellt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="221"/>
        <source>Permanent limited access, set by {who} at {when}</source>
        <translation>Dauerhaft eingeschränkter Zugriff seit {when}, eingestellt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="224"/>
        <source>Full access, set by {who} at {when}</source>
        <translation>Vollzugriff seit {when}, eingestellt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="225"/>
        <source>No access, set by {who} at {when}</source>
        <translation>Kein Zugriff seit {when}, eingestellt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="235"/>
        <source>1 hour</source>
        <translation>1 Stunde</translation>
    </message>
    <message>
        <location filename="../models.py" line="236"/>
        <source>2 hours</source>
        <translation>2 Stunden</translation>
    </message>
    <message>
        <location filename="../models.py" line="237"/>
        <source>4 hours</source>
        <translation>4 Stunden</translation>
    </message>
    <message>
        <location filename="../models.py" line="238"/>
        <source>8 hours</source>
        <translation>8 Stunden</translation>
    </message>
    <message>
        <location filename="../models.py" line="255"/>
        <source>An end time applies only to limited access.</source>
        <translation>Eine Endzeit gibt es nur bei eingeschränktem Zugriff.</translation>
    </message>
    <message>
        <location filename="../models.py" line="258"/>
        <source>Choose either a duration or an end time, not both.</source>
        <translation>Wählen Sie entweder eine Dauer oder eine Endzeit, nicht beides.</translation>
    </message>
    <message>
        <location filename="../models.py" line="265"/>
        <source>Choose how long limited access lasts: one of the durations, or an end time.</source>
        <translation>Wählen Sie für den eingeschränkten Zugriff eine Dauer oder eine Endzeit.</translation>
    </message>
    <message>
        <location filename="../models.py" line="268"/>
        <source>The end time has passed. Choose a time in the future.</source>
        <translation>Die Endzeit ist schon vorbei. Wählen Sie einen Zeitpunkt in der Zukunft.</translation>
    </message>
    <message>
        <location filename="../models.py" line="271"/>
        <source>Limited access can last at most {days} days. Choose an earlier end time, or permanent limited access.</source>
        <translation>Eingeschränkter Zugriff gilt höchstens {days} Tage. Wählen Sie eine frühere Endzeit oder dauerhaft eingeschränkten Zugriff.</translation>
    </message>
</context>
<context>
    <name>AuditViewer</name>
    <message>
        <location filename="../audit_viewer.py" line="43"/>
        <source>ServiceGate audit log</source>
        <translation>ServiceGate-Protokoll (Audit-Log)</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="49"/>
        <location filename="../audit_viewer.py" line="73"/>
        <location filename="../models.py" line="669"/>
        <source>Engineer</source>
        <translation>Servicetechniker</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="50"/>
        <source>Show</source>
        <translation>Anzeigen</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="51"/>
        <source>Export CSV…</source>
        <translation>CSV exportieren…</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="61"/>
        <source>Audit records</source>
        <translation>Protokolleinträge</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="62"/>
        <location filename="../audit_viewer.py" line="72"/>
        <source>From</source>
        <translation>Von</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="62"/>
        <location filename="../audit_viewer.py" line="72"/>
        <source>To</source>
        <translation>Bis</translation>
    </message>
    <message numerus="yes">
        <location filename="../audit_viewer.py" line="135"/>
        <source>%n record(s)</source>
        <translation>
            <numerusform>%n Eintrag</numerusform>
            <numerusform>%n Einträge</numerusform>
        </translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="138"/>
        <source>Export the audit log</source>
        <translation>Protokoll exportieren</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="149"/>
        <source>Cannot save {path}: {why}</source>
        <translation>{path} kann nicht gespeichert werden: {why}</translation>
    </message>
    <message>
        <location filename="../audit_viewer.py" line="152"/>
        <source>Saved {path}</source>
        <translation>Gespeichert: {path}</translation>
    </message>
    <message>
        <location filename="../models.py" line="668"/>
        <source>Time</source>
        <translation>Zeit</translation>
    </message>
    <message>
        <location filename="../models.py" line="668"/>
        <source>Event</source>
        <translation>Ereignis</translation>
    </message>
    <message>
        <location filename="../models.py" line="669"/>
        <source>By</source>
        <translation>Benutzer</translation>
    </message>
    <message>
        <location filename="../models.py" line="670"/>
        <source>Session</source>
        <translation>Sitzung</translation>
    </message>
    <message>
        <location filename="../models.py" line="670"/>
        <source>Details</source>
        <translation>Details</translation>
    </message>
    <message>
        <location filename="../models.py" line="672"/>
        <source>All engineers</source>
        <translation>Alle Servicetechniker</translation>
    </message>
</context>
<context>
    <name>Banner</name>
    <message>
        <location filename="../models.py" line="745"/>
        <source>End session</source>
        <translation>Sitzung beenden</translation>
    </message>
    <message>
        <location filename="../models.py" line="746"/>
        <source>End session stops every remote task now, ends every remote session and sets remote access to No access.</source>
        <translation>„Sitzung beenden“ stoppt sofort alle Aufgaben aus der Ferne, beendet alle Fernwartungssitzungen und setzt den Fernzugriff auf „Kein Zugriff“.</translation>
    </message>
    <message>
        <location filename="../models.py" line="784"/>
        <source>Remote service: {name} ({company})</source>
        <translation>Fernwartung: {name} ({company})</translation>
    </message>
    <message>
        <location filename="../models.py" line="786"/>
        <source>Application support: {name} ({company})</source>
        <translation>Applikationssupport: {name} ({company})</translation>
    </message>
    <message>
        <location filename="../models.py" line="789"/>
        <source>Remote service: {name}</source>
        <translation>Fernwartung: {name}</translation>
    </message>
    <message>
        <location filename="../models.py" line="790"/>
        <source>Application support: {name}</source>
        <translation>Applikationssupport: {name}</translation>
    </message>
    <message>
        <location filename="../models.py" line="796"/>
        <source>Access ends in {left}</source>
        <translation>Zugriff endet in {left}</translation>
    </message>
    <message>
        <location filename="../models.py" line="805"/>
        <source>Files sent: {sent}, still sending: {pending}</source>
        <translation>Dateien gesendet: {sent}, noch im Versand: {pending}</translation>
    </message>
    <message>
        <location filename="../models.py" line="808"/>
        <source>Files sent: {sent}</source>
        <translation>Dateien gesendet: {sent}</translation>
    </message>
    <message>
        <location filename="../models.py" line="812"/>
        <source>Reason: {reason}</source>
        <translation>Grund: {reason}</translation>
    </message>
    <message>
        <location filename="../models.py" line="813"/>
        <source>Level: {level}</source>
        <translation>Zugriffsstufe: {level}</translation>
    </message>
    <message>
        <location filename="../models.py" line="814"/>
        <source>Active for {elapsed}</source>
        <translation>Aktiv seit {elapsed}</translation>
    </message>
    <message>
        <location filename="../models.py" line="816"/>
        <source>Examinations blocked</source>
        <translation>Untersuchungen gesperrt</translation>
    </message>
    <message>
        <location filename="../models.py" line="818"/>
        <source>Other active sessions: {count}</source>
        <translation>Weitere aktive Sitzungen: {count}</translation>
    </message>
    <message>
        <location filename="../models.py" line="827"/>
        <source>Running: {tasks}</source>
        <translation>Läuft: {tasks}</translation>
    </message>
    <message>
        <location filename="../models.py" line="830"/>
        <source>Waiting for your approval: {tasks}</source>
        <translation>Wartet auf Ihre Freigabe: {tasks}</translation>
    </message>
    <message>
        <location filename="../models.py" line="833"/>
        <source>Last: {task}</source>
        <translation>Zuletzt: {task}</translation>
    </message>
    <message>
        <location filename="../models.py" line="834"/>
        <source>No task run yet</source>
        <translation>Noch keine Aufgabe</translation>
    </message>
</context>
<context>
    <name>Common</name>
    <message>
        <location filename="../models.py" line="106"/>
        <source>No access</source>
        <translation>Kein Zugriff</translation>
    </message>
    <message>
        <location filename="../models.py" line="107"/>
        <source>Limited access</source>
        <translation>Eingeschränkter Zugriff</translation>
    </message>
    <message>
        <location filename="../models.py" line="108"/>
        <source>Permanent limited access</source>
        <translation>Dauerhaft eingeschränkter Zugriff</translation>
    </message>
    <message>
        <location filename="../models.py" line="109"/>
        <source>Full access</source>
        <translation>Vollzugriff</translation>
    </message>
    <message>
        <location filename="../models.py" line="113"/>
        <source>Service</source>
        <translation>Service</translation>
    </message>
    <message>
        <location filename="../models.py" line="114"/>
        <source>Application support</source>
        <translation>Applikationssupport</translation>
    </message>
    <message>
        <location filename="../models.py" line="118"/>
        <source>Data privacy: during this remote session the service engineer could potentially view patient data. Confirm only if you expect this session and agree to it. You can end the session at any time.</source>
        <translation>Datenschutz: Während dieser Fernwartungssitzung kann der Servicetechniker möglicherweise Patientendaten sehen. Bestätigen Sie nur, wenn Sie diese Sitzung erwarten und ihr zustimmen. Sie können die Sitzung jederzeit beenden.</translation>
    </message>
    <message>
        <location filename="../models.py" line="122"/>
        <source>I have read the data-privacy notice and agree to this session.</source>
        <translation>Ich habe den Datenschutzhinweis gelesen und stimme dieser Sitzung zu.</translation>
    </message>
    <message>
        <location filename="../models.py" line="124"/>
        <source>Examinations will be blocked while this session is active.</source>
        <translation>Solange diese Sitzung aktiv ist, sind Untersuchungen gesperrt.</translation>
    </message>
    <message>
        <location filename="../models.py" line="126"/>
        <source>Not given</source>
        <translation>Nicht angegeben</translation>
    </message>
    <message>
        <location filename="../models.py" line="127"/>
        <source>ServiceGate (automatically)</source>
        <translation>ServiceGate (automatisch)</translation>
    </message>
    <message>
        <location filename="../models.py" line="142"/>
        <source>less than a minute</source>
        <translation>weniger als 1 Min.</translation>
    </message>
    <message>
        <location filename="../models.py" line="146"/>
        <source>{days} d {hours} h</source>
        <translation>{days} Tg. {hours} Std.</translation>
    </message>
    <message>
        <location filename="../models.py" line="147"/>
        <source>{days} d</source>
        <translation>{days} Tg.</translation>
    </message>
    <message>
        <location filename="../models.py" line="149"/>
        <source>{hours} h {minutes} min</source>
        <translation>{hours} Std. {minutes} Min.</translation>
    </message>
    <message>
        <location filename="../models.py" line="150"/>
        <source>{hours} h</source>
        <translation>{hours} Std.</translation>
    </message>
    <message>
        <location filename="../models.py" line="151"/>
        <source>{minutes} min</source>
        <translation>{minutes} Min.</translation>
    </message>
    <message>
        <location filename="../models.py" line="473"/>
        <source>The key that ends a session cannot be used ({detail}). End session on the banner works; ask site IT to correct [console] hotkey.</source>
        <translation>Die Tastenkombination zum Beenden einer Sitzung ist nicht nutzbar ({detail}). „Sitzung beenden“ im Banner funktioniert; bitten Sie Ihre IT-Abteilung, [console] hotkey zu korrigieren.</translation>
    </message>
    <message>
        <location filename="../models.py" line="493"/>
        <source>Remote service is unavailable: the ServiceGate agent is not running.</source>
        <translation>Fernwartung nicht verfügbar: Der ServiceGate-Agent läuft nicht.</translation>
    </message>
    <message>
        <location filename="../models.py" line="496"/>
        <source>You are not allowed to do this from your account. Ask site IT to add you to the ServiceGate console group.</source>
        <translation>Ihr Benutzerkonto ist dazu nicht berechtigt. Bitten Sie Ihre IT-Abteilung, Sie in die ServiceGate-Konsolengruppe aufzunehmen.</translation>
    </message>
    <message>
        <location filename="../models.py" line="519"/>
        <source>waiting for your approval</source>
        <translation>wartet auf Ihre Freigabe</translation>
    </message>
    <message>
        <location filename="../models.py" line="520"/>
        <source>running</source>
        <translation>läuft</translation>
    </message>
    <message>
        <location filename="../models.py" line="521"/>
        <source>completed</source>
        <translation>abgeschlossen</translation>
    </message>
    <message>
        <location filename="../models.py" line="522"/>
        <source>failed</source>
        <translation>fehlgeschlagen</translation>
    </message>
    <message>
        <location filename="../models.py" line="523"/>
        <source>stopped: it took too long</source>
        <translation>gestoppt: dauerte zu lange</translation>
    </message>
    <message>
        <location filename="../models.py" line="524"/>
        <source>stopped</source>
        <translation>gestoppt</translation>
    </message>
    <message>
        <location filename="../models.py" line="525"/>
        <source>declined</source>
        <translation>abgelehnt</translation>
    </message>
    <message>
        <location filename="../models.py" line="526"/>
        <source>refused</source>
        <translation>verweigert</translation>
    </message>
    <message>
        <location filename="../models.py" line="539"/>
        <source>by the kill switch</source>
        <translation>durch Notaus für den Fernzugriff</translation>
    </message>
    <message>
        <location filename="../models.py" line="541"/>
        <source>remote access was lowered</source>
        <translation>Fernzugriff wurde herabgesetzt</translation>
    </message>
    <message>
        <location filename="../models.py" line="543"/>
        <source>it took too long</source>
        <translation>dauerte zu lange</translation>
    </message>
    <message>
        <location filename="../models.py" line="545"/>
        <source>ServiceGate stopped</source>
        <translation>ServiceGate wurde gestoppt</translation>
    </message>
    <message>
        <location filename="../models.py" line="547"/>
        <source>the session ended</source>
        <translation>Sitzung wurde beendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="548"/>
        <source>stopped by {who}</source>
        <translation>gestoppt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="549"/>
        <source>declined by {who}</source>
        <translation>abgelehnt von {who}</translation>
    </message>
    <message>
        <location filename="../models.py" line="560"/>
        <source>{title} — {state}</source>
        <translation>{title} — {state}</translation>
    </message>
    <message>
        <location filename="../models.py" line="561"/>
        <source>{title} — {state} ({why})</source>
        <translation>{title} — {state} ({why})</translation>
    </message>
</context>
<context>
    <name>Console</name>
    <message>
        <location filename="../app.py" line="79"/>
        <source>Change access level…</source>
        <translation>Zugriffsstufe ändern…</translation>
    </message>
    <message>
        <location filename="../app.py" line="80"/>
        <source>Enter session ID…</source>
        <translation>Sitzungs-ID eingeben…</translation>
    </message>
    <message>
        <location filename="../app.py" line="81"/>
        <source>Show audit log…</source>
        <translation>Protokoll anzeigen…</translation>
    </message>
    <message>
        <location filename="../app.py" line="154"/>
        <source>Remote service unavailable: the ServiceGate agent cannot be reached. Remote access is not possible meanwhile.</source>
        <translation>Fernwartung nicht verfügbar: Der ServiceGate-Agent ist nicht erreichbar. Bis dahin ist kein Fernzugriff möglich.</translation>
    </message>
</context>
<context>
    <name>Launcher</name>
    <message>
        <location filename="../app.py" line="48"/>
        <source>ServiceGate remote service</source>
        <translation>ServiceGate-Fernwartung</translation>
    </message>
    <message>
        <location filename="../app.py" line="51"/>
        <source>Change access level…</source>
        <translation>Zugriffsstufe ändern…</translation>
    </message>
    <message>
        <location filename="../app.py" line="52"/>
        <source>Enter session ID…</source>
        <translation>Sitzungs-ID eingeben…</translation>
    </message>
    <message>
        <location filename="../app.py" line="53"/>
        <source>Show audit log…</source>
        <translation>Protokoll anzeigen…</translation>
    </message>
</context>
<context>
    <name>Receipt</name>
    <message>
        <location filename="../models.py" line="583"/>
        <source>De-identified, checked by the portal</source>
        <translation>Anonymisiert, vom Portal geprüft</translation>
    </message>
    <message>
        <location filename="../models.py" line="585"/>
        <source>De-identified, refused by the portal&apos;s check and deleted there: {problems}</source>
        <translation>Anonymisiert, bei der Prüfung im Portal abgelehnt und dort gelöscht: {problems}</translation>
    </message>
    <message>
        <location filename="../models.py" line="588"/>
        <source>De-identified, could not be sent: {problems}</source>
        <translation>Anonymisiert, konnte nicht gesendet werden: {problems}</translation>
    </message>
    <message>
        <location filename="../models.py" line="591"/>
        <source>De-identified, still being sent</source>
        <translation>Anonymisiert, wird noch gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="603"/>
        <source>Released by {who} after the privacy notice, sent</source>
        <translation>Nach dem Datenschutzhinweis von {who} freigegeben, gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="607"/>
        <source>Scrubbed of identifying text, sent</source>
        <translation>Von identifizierendem Text bereinigt, gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="610"/>
        <source>De-identified, queued for upload</source>
        <translation>Anonymisiert, zum Senden vorgemerkt</translation>
    </message>
    <message>
        <location filename="../models.py" line="613"/>
        <source>Refused by the anonymizer: kept on the device, not sent</source>
        <translation>Vom Anonymisierer abgelehnt: auf dem Gerät zurückgehalten, nicht gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="615"/>
        <source>Kept on the device until you release it; not sent</source>
        <translation>Auf dem Gerät zurückgehalten, bis Sie die Datei freigeben; nicht gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="617"/>
        <source>Kept on the device, not sent</source>
        <translation>Auf dem Gerät zurückgehalten, nicht gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="619"/>
        <source>Deleted on the device, not sent</source>
        <translation>Auf dem Gerät gelöscht, nicht gesendet</translation>
    </message>
    <message>
        <location filename="../models.py" line="845"/>
        <source>The engineer ended the session.</source>
        <translation>Der Servicetechniker hat die Sitzung beendet.</translation>
    </message>
    <message>
        <location filename="../models.py" line="846"/>
        <source>The session was declined at the console.</source>
        <translation>Die Sitzung wurde an der Konsole abgelehnt.</translation>
    </message>
    <message>
        <location filename="../models.py" line="847"/>
        <source>Nobody confirmed the session at the console in time.</source>
        <translation>Die Sitzung wurde an der Konsole nicht rechtzeitig bestätigt.</translation>
    </message>
    <message>
        <location filename="../models.py" line="848"/>
        <source>Remote access was lowered below what the session used.</source>
        <translation>Der Fernzugriff wurde unter die Zugriffsstufe der Sitzung herabgesetzt.</translation>
    </message>
    <message>
        <location filename="../models.py" line="849"/>
        <source>The session was ended with the kill switch (End session).</source>
        <translation>Die Sitzung wurde mit dem Notaus für den Fernzugriff („Sitzung beenden“) beendet.</translation>
    </message>
    <message>
        <location filename="../models.py" line="850"/>
        <source>The engineer did nothing for longer than the idle timeout.</source>
        <translation>Der Servicetechniker war länger als erlaubt inaktiv.</translation>
    </message>
    <message>
        <location filename="../models.py" line="852"/>
        <source>The session reached its time limit.</source>
        <translation>Die Sitzung hat ihre Höchstdauer erreicht.</translation>
    </message>
    <message>
        <location filename="../models.py" line="853"/>
        <source>The limited access the session relied on reached its end time.</source>
        <translation>Der eingeschränkte Zugriff, auf dem die Sitzung beruhte, hat seine Endzeit erreicht.</translation>
    </message>
    <message>
        <location filename="../models.py" line="855"/>
        <source>The engineer did not sign in (wrong or no one-time password in time).</source>
        <translation>Der Servicetechniker hat sich nicht angemeldet (Einmalpasswort falsch oder nicht rechtzeitig).</translation>
    </message>
    <message>
        <location filename="../models.py" line="857"/>
        <source>The connection to the service centre was lost.</source>
        <translation>Die Verbindung zur Servicezentrale wurde unterbrochen.</translation>
    </message>
    <message>
        <location filename="../models.py" line="858"/>
        <source>ServiceGate stopped for a software update.</source>
        <translation>ServiceGate wurde für ein Software-Update gestoppt.</translation>
    </message>
    <message>
        <location filename="../models.py" line="859"/>
        <source>ServiceGate stopped while the session was open; it was ended when it started again.</source>
        <translation>ServiceGate wurde während der Sitzung gestoppt; beim Neustart wurde die Sitzung beendet.</translation>
    </message>
    <message>
        <location filename="../models.py" line="894"/>
        <source>{name} (engineer ID {id}, {company})</source>
        <translation>{name} (Servicetechniker-ID {id}, {company})</translation>
    </message>
    <message>
        <location filename="../models.py" line="896"/>
        <source>{name} (engineer ID {id})</source>
        <translation>{name} (Servicetechniker-ID {id})</translation>
    </message>
    <message>
        <location filename="../models.py" line="899"/>
        <source>{start} to {end} ({length})</source>
        <translation>{start} bis {end} ({length})</translation>
    </message>
    <message>
        <location filename="../models.py" line="902"/>
        <source>Level: {level}</source>
        <translation>Zugriffsstufe: {level}</translation>
    </message>
    <message>
        <location filename="../models.py" line="905"/>
        <source>Not granted (asked for {level})</source>
        <translation>Nicht gewährt (angefragt: {level})</translation>
    </message>
    <message>
        <location filename="../models.py" line="911"/>
        <source>Engineer&apos;s summary: {text}</source>
        <translation>Zusammenfassung des Servicetechnikers: {text}</translation>
    </message>
    <message>
        <location filename="../models.py" line="912"/>
        <source>Note: {text}</source>
        <translation>Notiz: {text}</translation>
    </message>
    <message>
        <location filename="../models.py" line="917"/>
        <source>Its output was sent, scrubbed of identifying text</source>
        <translation>Ausgabe gesendet, von identifizierendem Text bereinigt</translation>
    </message>
    <message>
        <location filename="../models.py" line="922"/>
        <source>Remote session ended</source>
        <translation>Fernwartungssitzung beendet</translation>
    </message>
</context>
<context>
    <name>ReceiptDialog</name>
    <message>
        <location filename="../dialogs.py" line="337"/>
        <source>Close</source>
        <translation>Schließen</translation>
    </message>
</context>
<context>
    <name>RequestNotice</name>
    <message>
        <location filename="../dialogs.py" line="379"/>
        <source>OK</source>
        <translation>OK</translation>
    </message>
</context>
<context>
    <name>SessionDialog</name>
    <message>
        <location filename="../dialogs.py" line="187"/>
        <source>Remote service session</source>
        <translation>Fernwartungssitzung</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="196"/>
        <source>Type in the session ID the engineer gives you on the phone.</source>
        <translation>Geben Sie die Sitzungs-ID ein, die Ihnen der Servicetechniker am Telefon nennt.</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="199"/>
        <location filename="../models.py" line="386"/>
        <source>Session ID</source>
        <translation>Sitzungs-ID</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="207"/>
        <source>Continue</source>
        <translation>Weiter</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="226"/>
        <source>Decline</source>
        <translation>Ablehnen</translation>
    </message>
    <message>
        <location filename="../dialogs.py" line="227"/>
        <source>Accept</source>
        <translation>Annehmen</translation>
    </message>
    <message>
        <location filename="../models.py" line="293"/>
        <source>A session ID has 8 digits, like 1234 5678. Check the number with the engineer.</source>
        <translation>Eine Sitzungs-ID hat 8 Ziffern, z. B. 1234 5678. Gleichen Sie die Nummer mit dem Servicetechniker ab.</translation>
    </message>
    <message>
        <location filename="../models.py" line="359"/>
        <source>Examinations remain possible during this session.</source>
        <translation>Untersuchungen bleiben während dieser Sitzung möglich.</translation>
    </message>
    <message>
        <location filename="../models.py" line="370"/>
        <source>Until you or the engineer end it; at most {limit}</source>
        <translation>Bis Sie oder der Servicetechniker sie beenden; höchstens {limit}</translation>
    </message>
    <message>
        <location filename="../models.py" line="374"/>
        <source>You typed in this session&apos;s ID.</source>
        <translation>Sie haben die Sitzungs-ID eingegeben.</translation>
    </message>
    <message>
        <location filename="../models.py" line="375"/>
        <source>The engineer asked for this session through the service centre.</source>
        <translation>Der Servicetechniker hat diese Sitzung über die Servicezentrale angefragt.</translation>
    </message>
    <message>
        <location filename="../models.py" line="377"/>
        <source>Engineer</source>
        <translation>Servicetechniker</translation>
    </message>
    <message>
        <location filename="../models.py" line="378"/>
        <source>Engineer ID</source>
        <translation>Servicetechniker-ID</translation>
    </message>
    <message>
        <location filename="../models.py" line="379"/>
        <source>Company</source>
        <translation>Firma</translation>
    </message>
    <message>
        <location filename="../models.py" line="380"/>
        <source>Reason</source>
        <translation>Grund</translation>
    </message>
    <message>
        <location filename="../models.py" line="381"/>
        <source>Kind of session</source>
        <translation>Art der Sitzung</translation>
    </message>
    <message>
        <location filename="../models.py" line="382"/>
        <source>Access</source>
        <translation>Zugriff</translation>
    </message>
    <message>
        <location filename="../models.py" line="385"/>
        <source>How long</source>
        <translation>Dauer</translation>
    </message>
    <message>
        <location filename="../models.py" line="415"/>
        <source>For this session only: more than your standing access ({standing}).</source>
        <translation>Nur für diese Sitzung: mehr als Ihre eingestellte Zugriffsstufe ({standing}).</translation>
    </message>
    <message>
        <location filename="../models.py" line="429"/>
        <source>Please confirm the data-privacy notice first.</source>
        <translation>Bitte bestätigen Sie zuerst den Datenschutzhinweis.</translation>
    </message>
    <message>
        <location filename="../models.py" line="455"/>
        <source>{name} ({company}) asks for {level}: {reason}</source>
        <translation>Anfrage von {name} ({company}): {level} – {reason}</translation>
    </message>
    <message>
        <location filename="../models.py" line="457"/>
        <source>{name} asks for {level}: {reason}</source>
        <translation>Anfrage von {name}: {level} – {reason}</translation>
    </message>
    <message>
        <location filename="../models.py" line="459"/>
        <source>Confirm or decline this session.</source>
        <translation>Nehmen Sie diese Sitzung an oder lehnen Sie sie ab.</translation>
    </message>
    <message>
        <location filename="../models.py" line="460"/>
        <source>Allowed by your standing access level. The engineer is signing in; you can end the session at any time.</source>
        <translation>Durch Ihre eingestellte Zugriffsstufe erlaubt. Der Servicetechniker meldet sich gerade an; Sie können die Sitzung jederzeit beenden.</translation>
    </message>
    <message>
        <location filename="../models.py" line="462"/>
        <source>Examinations will be blocked while this session is active. Confirm only when no patient is being examined.</source>
        <translation>Solange diese Sitzung aktiv ist, sind Untersuchungen gesperrt. Bestätigen Sie nur, wenn gerade kein Patient untersucht wird.</translation>
    </message>
    <message>
        <location filename="../models.py" line="465"/>
        <source>Remote service request</source>
        <translation>Fernwartungsanfrage</translation>
    </message>
    <message>
        <location filename="../models.py" line="502"/>
        <source>The session ID cannot be checked now: the service centre cannot be reached. Try again in a few minutes.</source>
        <translation>Die Sitzungs-ID kann jetzt nicht geprüft werden: Die Servicezentrale ist nicht erreichbar. Versuchen Sie es in einigen Minuten erneut.</translation>
    </message>
    <message>
        <location filename="../models.py" line="506"/>
        <source>Too many wrong session IDs were typed in. Wait a few minutes, then try again.</source>
        <translation>Zu viele falsche Sitzungs-IDs eingegeben. Warten Sie einige Minuten und versuchen Sie es dann erneut.</translation>
    </message>
    <message>
        <location filename="../models.py" line="510"/>
        <source>The portal does not know this session ID, or it has expired. Check the number with the engineer.</source>
        <translation>Diese Sitzungs-ID ist dem Portal nicht bekannt oder abgelaufen. Gleichen Sie die Nummer mit dem Servicetechniker ab.</translation>
    </message>
</context>
<context>
    <name>Tray</name>
    <message>
        <location filename="../models.py" line="728"/>
        <source>ServiceGate: remote service unavailable (the agent cannot be reached)</source>
        <translation>ServiceGate: Fernwartung nicht verfügbar (Agent nicht erreichbar)</translation>
    </message>
    <message>
        <location filename="../models.py" line="735"/>
        <source>ServiceGate: remote session active ({name}, {company})</source>
        <translation>ServiceGate: Fernwartungssitzung aktiv ({name}, {company})</translation>
    </message>
    <message>
        <location filename="../models.py" line="738"/>
        <source>ServiceGate: {access}</source>
        <translation>ServiceGate: {access}</translation>
    </message>
</context>
</TS>
