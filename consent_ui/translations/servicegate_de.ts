<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="de_DE" sourcelanguage="en">
<context>
    <name>AccessDialog</name>
    <message>
        <source>Remote access</source>
        <translation>Fernzugriff</translation>
    </message>
    <message>
        <source>Until a time I choose</source>
        <translation>Endzeit selbst wählen</translation>
    </message>
    <message>
        <source>How long</source>
        <translation>Dauer</translation>
    </message>
    <message>
        <source>End time</source>
        <translation>Endzeit</translation>
    </message>
    <message>
        <source>How long:</source>
        <translation>Dauer:</translation>
    </message>
    <message>
        <source>Apply</source>
        <translation>Übernehmen</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>Abbrechen</translation>
    </message>
    <message>
        <source>The agent did not apply this level. Please try again.</source>
        <translation>Der Agent hat diese Zugriffsstufe nicht übernommen. Bitte versuchen Sie es erneut.</translation>
    </message>
    <message>
        <source>No remote access, except a session you confirm by its ID.</source>
        <translation>Kein Fernzugriff, außer für eine Sitzung, die Sie mit ihrer Sitzungs-ID bestätigen.</translation>
    </message>
    <message>
        <source>Limited remote service until the time you choose. Examinations are possible.</source>
        <translation>Eingeschränkte Fernwartung bis zum gewählten Zeitpunkt. Untersuchungen sind möglich.</translation>
    </message>
    <message>
        <source>Limited remote service with no end time. Examinations are possible.</source>
        <translation>Eingeschränkte Fernwartung ohne Endzeit. Untersuchungen sind möglich.</translation>
    </message>
    <message>
        <source>Examinations are not possible while a remote session is active.</source>
        <translation>Während einer Fernwartungssitzung sind keine Untersuchungen möglich.</translation>
    </message>
    <message>
        <source>Limited access, set by {who} at {when}, until {until} ({left} left)</source>
        <translation>Eingeschränkter Zugriff von {when} bis {until} (noch {left}), eingestellt von {who}</translation>
    </message>
    <message>
        <source>Limited access, set by {who} at {when}, with no end time</source>
        <translation>Eingeschränkter Zugriff seit {when}, ohne Endzeit, eingestellt von {who}</translation>
    </message>
    <message>
        <source>Permanent limited access, set by {who} at {when}</source>
        <translation>Dauerhaft eingeschränkter Zugriff seit {when}, eingestellt von {who}</translation>
    </message>
    <message>
        <source>Full access, set by {who} at {when}</source>
        <translation>Vollzugriff seit {when}, eingestellt von {who}</translation>
    </message>
    <message>
        <source>No access, set by {who} at {when}</source>
        <translation>Kein Zugriff seit {when}, eingestellt von {who}</translation>
    </message>
    <message>
        <source>1 hour</source>
        <translation>1 Stunde</translation>
    </message>
    <message>
        <source>2 hours</source>
        <translation>2 Stunden</translation>
    </message>
    <message>
        <source>4 hours</source>
        <translation>4 Stunden</translation>
    </message>
    <message>
        <source>8 hours</source>
        <translation>8 Stunden</translation>
    </message>
    <message>
        <source>An end time applies only to limited access.</source>
        <translation>Eine Endzeit gibt es nur bei eingeschränktem Zugriff.</translation>
    </message>
    <message>
        <source>Choose either a duration or an end time, not both.</source>
        <translation>Wählen Sie entweder eine Dauer oder eine Endzeit, nicht beides.</translation>
    </message>
    <message>
        <source>Choose how long limited access lasts: one of the durations, or an end time.</source>
        <translation>Wählen Sie für den eingeschränkten Zugriff eine Dauer oder eine Endzeit.</translation>
    </message>
    <message>
        <source>The end time has passed. Choose a time in the future.</source>
        <translation>Die Endzeit ist schon vorbei. Wählen Sie einen Zeitpunkt in der Zukunft.</translation>
    </message>
    <message>
        <source>Limited access can last at most {days} days. Choose an earlier end time, or permanent limited access.</source>
        <translation>Eingeschränkter Zugriff gilt höchstens {days} Tage. Wählen Sie eine frühere Endzeit oder dauerhaft eingeschränkten Zugriff.</translation>
    </message>
</context>
<context>
    <name>AuditViewer</name>
    <message>
        <source>ServiceGate audit log</source>
        <translation>ServiceGate-Protokoll (Audit-Log)</translation>
    </message>
    <message>
        <source>Engineer</source>
        <translation>Servicetechniker</translation>
    </message>
    <message>
        <source>Show</source>
        <translation>Anzeigen</translation>
    </message>
    <message>
        <source>Export CSV…</source>
        <translation>CSV exportieren…</translation>
    </message>
    <message>
        <source>Audit records</source>
        <translation>Protokolleinträge</translation>
    </message>
    <message>
        <source>From</source>
        <translation>Von</translation>
    </message>
    <message>
        <source>To</source>
        <translation>Bis</translation>
    </message>
    <message>
        <source>The first day is after the last one: choose a first day before the last.</source>
        <translation>Der erste Tag liegt nach dem letzten: Wählen Sie einen ersten Tag vor dem letzten.</translation>
    </message>
    <message numerus="yes">
        <source>%n record(s)</source>
        <translation>
            <numerusform>%n Eintrag</numerusform>
            <numerusform>%n Einträge</numerusform>
        </translation>
    </message>
    <message>
        <source>Export the audit log</source>
        <translation>Protokoll exportieren</translation>
    </message>
    <message>
        <source>Cannot save {path}: {why}</source>
        <translation>{path} kann nicht gespeichert werden: {why}</translation>
    </message>
    <message>
        <source>Saved {path}</source>
        <translation>Gespeichert: {path}</translation>
    </message>
    <message>
        <source>Time</source>
        <translation>Zeit</translation>
    </message>
    <message>
        <source>Event</source>
        <translation>Ereignis</translation>
    </message>
    <message>
        <source>By</source>
        <translation>Benutzer</translation>
    </message>
    <message>
        <source>Session</source>
        <translation>Sitzung</translation>
    </message>
    <message>
        <source>Details</source>
        <translation>Details</translation>
    </message>
    <message>
        <source>All engineers</source>
        <translation>Alle Servicetechniker</translation>
    </message>
</context>
<context>
    <name>Banner</name>
    <message>
        <source>End session</source>
        <translation>Sitzung beenden</translation>
    </message>
    <message>
        <source>The ServiceGate agent cannot be reached: remote access stops with it. Tell site IT.</source>
        <translation>Der ServiceGate-Agent ist nicht erreichbar: Der Fernzugriff endet damit. Informieren Sie Ihre IT-Abteilung.</translation>
    </message>
    <message>
        <source>Ended at the console</source>
        <translation>An der Konsole beendet</translation>
    </message>
    <message>
        <source>End session stops every remote task now, ends every remote session and sets remote access to No access.</source>
        <translation>„Sitzung beenden“ stoppt sofort alle Aufgaben aus der Ferne, beendet alle Fernwartungssitzungen und setzt den Fernzugriff auf „Kein Zugriff“.</translation>
    </message>
    <message>
        <source>Remote service: {name} ({company})</source>
        <translation>Fernwartung: {name} ({company})</translation>
    </message>
    <message>
        <source>Application support: {name} ({company})</source>
        <translation>Applikationssupport: {name} ({company})</translation>
    </message>
    <message>
        <source>Remote service: {name}</source>
        <translation>Fernwartung: {name}</translation>
    </message>
    <message>
        <source>Application support: {name}</source>
        <translation>Applikationssupport: {name}</translation>
    </message>
    <message>
        <source>Access ends in {left}</source>
        <translation>Zugriff endet in {left}</translation>
    </message>
    <message>
        <source>Files sent: {sent}, still sending: {pending}</source>
        <translation>Dateien gesendet: {sent}, noch im Versand: {pending}</translation>
    </message>
    <message>
        <source>Files sent: {sent}</source>
        <translation>Dateien gesendet: {sent}</translation>
    </message>
    <message>
        <source>Reason: {reason}</source>
        <translation>Grund: {reason}</translation>
    </message>
    <message>
        <source>Case {case}</source>
        <translation>Fall {case}</translation>
    </message>
    <message>
        <source>Level: {level}</source>
        <translation>Zugriffsstufe: {level}</translation>
    </message>
    <message>
        <source>Active for {elapsed}</source>
        <translation>Aktiv seit {elapsed}</translation>
    </message>
    <message>
        <source>Examinations blocked</source>
        <translation>Untersuchungen gesperrt</translation>
    </message>
    <message>
        <source>Other active sessions: {count}</source>
        <translation>Weitere aktive Sitzungen: {count}</translation>
    </message>
    <message>
        <source>Software update {version}: the session is ending</source>
        <translation>Software-Update {version}: Die Sitzung wird beendet</translation>
    </message>
    <message>
        <source>Software update {version}: the session ends in {left}</source>
        <translation>Software-Update {version}: Die Sitzung endet in {left}</translation>
    </message>
    <message>
        <source>Running: {tasks}</source>
        <translation>Läuft: {tasks}</translation>
    </message>
    <message>
        <source>Waiting for your approval: {tasks}</source>
        <translation>Wartet auf Ihre Freigabe: {tasks}</translation>
    </message>
    <message>
        <source>Last: {task}</source>
        <translation>Zuletzt: {task}</translation>
    </message>
    <message>
        <source>No task run yet</source>
        <translation>Noch keine Aufgabe</translation>
    </message>
    <message>
        <source>Your screen is shared with {name} — view only (control needs full access)</source>
        <translation>Ihr Bildschirm wird mit {name} geteilt — nur Ansicht (Steuern nur bei Vollzugriff)</translation>
    </message>
    <message>
        <source>Your screen is shared with {name} — the engineer can use the mouse and keyboard</source>
        <translation>Ihr Bildschirm wird mit {name} geteilt — der Servicetechniker kann Maus und Tastatur bedienen</translation>
    </message>
    <message>
        <source>View only</source>
        <translation>Nur Ansicht</translation>
    </message>
    <message>
        <source>Take back the mouse and keyboard: {name} can only watch your screen.</source>
        <translation>Maus und Tastatur zurücknehmen: {name} kann Ihren Bildschirm dann nur noch ansehen.</translation>
    </message>
    <message>
        <source>Your screen is shared with {name} — view only</source>
        <translation>Ihr Bildschirm wird mit {name} geteilt — nur Ansicht</translation>
    </message>
    <message>
        <source>Allow control</source>
        <translation>Steuern erlauben</translation>
    </message>
    <message>
        <source>Let {name} use the mouse and keyboard of this console. You can take them back at any time.</source>
        <translation>{name} darf Maus und Tastatur dieser Konsole bedienen. Sie können das jederzeit zurücknehmen.</translation>
    </message>
    <message>
        <source>Control of your screen was not changed: {why}</source>
        <translation>Die Steuerung Ihres Bildschirms wurde nicht geändert: {why}</translation>
    </message>
</context>
<context>
    <name>Common</name>
    <message>
        <source>No access</source>
        <translation>Kein Zugriff</translation>
    </message>
    <message>
        <source>Limited access</source>
        <translation>Eingeschränkter Zugriff</translation>
    </message>
    <message>
        <source>Permanent limited access</source>
        <translation>Dauerhaft eingeschränkter Zugriff</translation>
    </message>
    <message>
        <source>Full access</source>
        <translation>Vollzugriff</translation>
    </message>
    <message>
        <source>Service</source>
        <translation>Service</translation>
    </message>
    <message>
        <source>Application support</source>
        <translation>Applikationssupport</translation>
    </message>
    <message>
        <source>Data privacy: during this remote session the service engineer could potentially view patient data. Confirm only if you expect this session and agree to it. You can end the session at any time.</source>
        <translation>Datenschutz: Während dieser Fernwartungssitzung kann der Servicetechniker möglicherweise Patientendaten sehen. Bestätigen Sie nur, wenn Sie diese Sitzung erwarten und ihr zustimmen. Sie können die Sitzung jederzeit beenden.</translation>
    </message>
    <message>
        <source>I have read the data-privacy notice and agree to this session.</source>
        <translation>Ich habe den Datenschutzhinweis gelesen und stimme dieser Sitzung zu.</translation>
    </message>
    <message>
        <source>Examinations will be blocked while this session is active.</source>
        <translation>Solange diese Sitzung aktiv ist, sind Untersuchungen gesperrt.</translation>
    </message>
    <message>
        <source>Not given</source>
        <translation>Nicht angegeben</translation>
    </message>
    <message>
        <source>ServiceGate (automatically)</source>
        <translation>ServiceGate (automatisch)</translation>
    </message>
    <message>
        <source>less than a minute</source>
        <translation>weniger als 1 Min.</translation>
    </message>
    <message>
        <source>{days} d {hours} h</source>
        <translation>{days} Tg. {hours} Std.</translation>
    </message>
    <message>
        <source>{days} d</source>
        <translation>{days} Tg.</translation>
    </message>
    <message>
        <source>{hours} h {minutes} min</source>
        <translation>{hours} Std. {minutes} Min.</translation>
    </message>
    <message>
        <source>{hours} h</source>
        <translation>{hours} Std.</translation>
    </message>
    <message>
        <source>{minutes} min</source>
        <translation>{minutes} Min.</translation>
    </message>
    <message>
        <source>The key that ends a session cannot be used ({detail}). End session on the banner works; ask site IT to correct [console] hotkey.</source>
        <translation>Die Tastenkombination zum Beenden einer Sitzung ist nicht nutzbar ({detail}). „Sitzung beenden“ im Banner funktioniert; bitten Sie Ihre IT-Abteilung, [console] hotkey zu korrigieren.</translation>
    </message>
    <message>
        <source>Remote service is unavailable: the ServiceGate agent is not running.</source>
        <translation>Fernwartung nicht verfügbar: Der ServiceGate-Agent läuft nicht.</translation>
    </message>
    <message>
        <source>You are not allowed to do this from your account. Ask site IT to add you to the ServiceGate console group.</source>
        <translation>Ihr Benutzerkonto ist dazu nicht berechtigt. Bitten Sie Ihre IT-Abteilung, Sie in die ServiceGate-Konsolengruppe aufzunehmen.</translation>
    </message>
    <message>
        <source>waiting for your approval</source>
        <translation>wartet auf Ihre Freigabe</translation>
    </message>
    <message>
        <source>running</source>
        <translation>läuft</translation>
    </message>
    <message>
        <source>completed</source>
        <translation>abgeschlossen</translation>
    </message>
    <message>
        <source>failed</source>
        <translation>fehlgeschlagen</translation>
    </message>
    <message>
        <source>stopped: it took too long</source>
        <translation>gestoppt: dauerte zu lange</translation>
    </message>
    <message>
        <source>stopped</source>
        <translation>gestoppt</translation>
    </message>
    <message>
        <source>declined</source>
        <translation>abgelehnt</translation>
    </message>
    <message>
        <source>refused</source>
        <translation>verweigert</translation>
    </message>
    <message>
        <source>by the kill switch</source>
        <translation>durch Notaus für den Fernzugriff</translation>
    </message>
    <message>
        <source>remote access was lowered</source>
        <translation>Fernzugriff wurde herabgesetzt</translation>
    </message>
    <message>
        <source>it took too long</source>
        <translation>dauerte zu lange</translation>
    </message>
    <message>
        <source>ServiceGate stopped</source>
        <translation>ServiceGate wurde gestoppt</translation>
    </message>
    <message>
        <source>the session ended</source>
        <translation>Sitzung wurde beendet</translation>
    </message>
    <message>
        <source>stopped by {who}</source>
        <translation>gestoppt von {who}</translation>
    </message>
    <message>
        <source>declined by {who}</source>
        <translation>abgelehnt von {who}</translation>
    </message>
    <message>
        <source>{title} — {state}</source>
        <translation>{title} — {state}</translation>
    </message>
    <message>
        <source>{title} — {state} ({why})</source>
        <translation>{title} — {state} ({why})</translation>
    </message>
</context>
<context>
    <name>Console</name>
    <message>
        <source>Change access level…</source>
        <translation>Zugriffsstufe ändern…</translation>
    </message>
    <message>
        <source>Enter session ID…</source>
        <translation>Sitzungs-ID eingeben…</translation>
    </message>
    <message>
        <source>Request service…</source>
        <translation>Service anfordern…</translation>
    </message>
    <message>
        <source>Show audit log…</source>
        <translation>Protokoll anzeigen…</translation>
    </message>
    <message>
        <source>Updates…</source>
        <translation>Updates…</translation>
    </message>
    <message>
        <source>Remote service unavailable: the ServiceGate agent cannot be reached. Remote access is not possible meanwhile.</source>
        <translation>Fernwartung nicht verfügbar: Der ServiceGate-Agent ist nicht erreichbar. Bis dahin ist kein Fernzugriff möglich.</translation>
    </message>
</context>
<context>
    <name>Launcher</name>
    <message>
        <source>ServiceGate remote service</source>
        <translation>ServiceGate-Fernwartung</translation>
    </message>
</context>
<context>
    <name>Receipt</name>
    <message>
        <source>De-identified, checked by the portal</source>
        <translation>Anonymisiert, vom Portal geprüft</translation>
    </message>
    <message>
        <source>De-identified, refused by the portal&apos;s check and deleted there: {problems}</source>
        <translation>Anonymisiert, bei der Prüfung im Portal abgelehnt und dort gelöscht: {problems}</translation>
    </message>
    <message>
        <source>De-identified, could not be sent: {problems}</source>
        <translation>Anonymisiert, konnte nicht gesendet werden: {problems}</translation>
    </message>
    <message>
        <source>De-identified, still being sent</source>
        <translation>Anonymisiert, wird noch gesendet</translation>
    </message>
    <message>
        <source>Released by {who} after the privacy notice, sent</source>
        <translation>Nach dem Datenschutzhinweis von {who} freigegeben, gesendet</translation>
    </message>
    <message>
        <source>Scrubbed of identifying text, sent</source>
        <translation>Von identifizierendem Text bereinigt, gesendet</translation>
    </message>
    <message>
        <source>De-identified, queued for upload</source>
        <translation>Anonymisiert, zum Senden vorgemerkt</translation>
    </message>
    <message>
        <source>Refused by the anonymizer: kept on the device, not sent</source>
        <translation>Vom Anonymisierer abgelehnt: auf dem Gerät zurückgehalten, nicht gesendet</translation>
    </message>
    <message>
        <source>Kept on the device until you release it; not sent</source>
        <translation>Auf dem Gerät zurückgehalten, bis Sie die Datei freigeben; nicht gesendet</translation>
    </message>
    <message>
        <source>Kept on the device, not sent</source>
        <translation>Auf dem Gerät zurückgehalten, nicht gesendet</translation>
    </message>
    <message>
        <source>Deleted on the device, not sent</source>
        <translation>Auf dem Gerät gelöscht, nicht gesendet</translation>
    </message>
    <message>
        <source>The engineer ended the session.</source>
        <translation>Der Servicetechniker hat die Sitzung beendet.</translation>
    </message>
    <message>
        <source>The session was declined at the console.</source>
        <translation>Die Sitzung wurde an der Konsole abgelehnt.</translation>
    </message>
    <message>
        <source>Nobody confirmed the session at the console in time.</source>
        <translation>Die Sitzung wurde an der Konsole nicht rechtzeitig bestätigt.</translation>
    </message>
    <message>
        <source>Remote access was lowered below what the session used.</source>
        <translation>Der Fernzugriff wurde unter die Zugriffsstufe der Sitzung herabgesetzt.</translation>
    </message>
    <message>
        <source>The session was ended with the kill switch (End session).</source>
        <translation>Die Sitzung wurde mit dem Notaus für den Fernzugriff („Sitzung beenden“) beendet.</translation>
    </message>
    <message>
        <source>The engineer did nothing for longer than the idle timeout.</source>
        <translation>Der Servicetechniker war länger als erlaubt inaktiv.</translation>
    </message>
    <message>
        <source>The session reached its time limit.</source>
        <translation>Die Sitzung hat ihre Höchstdauer erreicht.</translation>
    </message>
    <message>
        <source>The limited access the session relied on reached its end time.</source>
        <translation>Der eingeschränkte Zugriff, auf dem die Sitzung beruhte, hat seine Endzeit erreicht.</translation>
    </message>
    <message>
        <source>The engineer did not sign in (wrong or no one-time password in time).</source>
        <translation>Der Servicetechniker hat sich nicht angemeldet (Einmalpasswort falsch oder nicht rechtzeitig).</translation>
    </message>
    <message>
        <source>The connection to the service centre was lost.</source>
        <translation>Die Verbindung zur Servicezentrale wurde unterbrochen.</translation>
    </message>
    <message>
        <source>ServiceGate stopped for a software update.</source>
        <translation>ServiceGate wurde für ein Software-Update gestoppt.</translation>
    </message>
    <message>
        <source>ServiceGate stopped while the session was open; it was ended when it started again.</source>
        <translation>ServiceGate wurde während der Sitzung gestoppt; beim Neustart wurde die Sitzung beendet.</translation>
    </message>
    <message>
        <source>{name} (engineer ID {id}, {company})</source>
        <translation>{name} (Servicetechniker-ID {id}, {company})</translation>
    </message>
    <message>
        <source>{name} (engineer ID {id})</source>
        <translation>{name} (Servicetechniker-ID {id})</translation>
    </message>
    <message>
        <source>{start} to {end} ({length})</source>
        <translation>{start} bis {end} ({length})</translation>
    </message>
    <message>
        <source>Level: {level}</source>
        <translation>Zugriffsstufe: {level}</translation>
    </message>
    <message>
        <source>Not granted (asked for {level})</source>
        <translation>Nicht gewährt (angefragt: {level})</translation>
    </message>
    <message>
        <source>Engineer&apos;s summary: {text}</source>
        <translation>Zusammenfassung des Servicetechnikers: {text}</translation>
    </message>
    <message>
        <source>Note: {text}</source>
        <translation>Notiz: {text}</translation>
    </message>
    <message>
        <source>Its output was sent, scrubbed of identifying text</source>
        <translation>Ausgabe gesendet, von identifizierendem Text bereinigt</translation>
    </message>
    <message>
        <source>Remote session ended</source>
        <translation>Fernwartungssitzung beendet</translation>
    </message>
</context>
<context>
    <name>ReceiptDialog</name>
    <message>
        <source>Close</source>
        <translation>Schließen</translation>
    </message>
    <message>
        <source>Tasks</source>
        <translation>Aufgaben</translation>
    </message>
    <message>
        <source>Files</source>
        <translation>Dateien</translation>
    </message>
</context>
<context>
    <name>RequestNotice</name>
    <message>
        <source>OK</source>
        <translation>OK</translation>
    </message>
</context>
<context>
    <name>RequestService</name>
    <message>
        <source>Low</source>
        <translation>Niedrig</translation>
    </message>
    <message>
        <source>A question or a small problem; the scanner works as usual.</source>
        <translation>Eine Frage oder ein kleines Problem; das Gerät arbeitet normal.</translation>
    </message>
    <message>
        <source>Normal</source>
        <translation>Normal</translation>
    </message>
    <message>
        <source>A problem that hampers work; the scanner can still be used.</source>
        <translation>Ein Problem, das die Arbeit behindert; das Gerät ist noch nutzbar.</translation>
    </message>
    <message>
        <source>High</source>
        <translation>Hoch</translation>
    </message>
    <message>
        <source>The scanner cannot be used.</source>
        <translation>Das Gerät kann nicht benutzt werden.</translation>
    </message>
    <message>
        <source>Describe the problem in a few words (at least {minimum} characters).</source>
        <translation>Beschreiben Sie das Problem in wenigen Worten (mindestens {minimum} Zeichen).</translation>
    </message>
    <message>
        <source>The description has {count} characters; keep it to at most {maximum}. The service centre will call you for the details.</source>
        <translation>Die Beschreibung hat {count} Zeichen; bitte höchstens {maximum}. Die Servicezentrale ruft Sie für Einzelheiten an.</translation>
    </message>
    <message>
        <source>Sent to the service centre. Case number: {case}. Keep it at hand when the service centre calls.</source>
        <translation>An die Servicezentrale gesendet. Fallnummer: {case}. Halten Sie sie bereit, wenn die Servicezentrale anruft.</translation>
    </message>
    <message>
        <source>The service centre refused the request: {why}. Call the service centre.</source>
        <translation>Die Servicezentrale hat die Anfrage abgelehnt: {why}. Rufen Sie die Servicezentrale an.</translation>
    </message>
    <message>
        <source>The service centre cannot be reached now. Your request is kept and sent as soon as it can be; the case number will appear here. The scanner cannot be used: please also call the service centre.</source>
        <translation>Die Servicezentrale ist gerade nicht erreichbar. Ihre Anfrage wird aufbewahrt und gesendet, sobald es möglich ist; die Fallnummer erscheint dann hier. Das Gerät kann nicht benutzt werden: Bitte rufen Sie zusätzlich die Servicezentrale an.</translation>
    </message>
    <message>
        <source>The service centre cannot be reached now. Your request is kept and sent as soon as it can be; the case number will appear here.</source>
        <translation>Die Servicezentrale ist gerade nicht erreichbar. Ihre Anfrage wird aufbewahrt und gesendet, sobald es möglich ist; die Fallnummer erscheint dann hier.</translation>
    </message>
</context>
<context>
    <name>RequestServiceDialog</name>
    <message>
        <source>Request service</source>
        <translation>Service anfordern</translation>
    </message>
    <message>
        <source>Describe the problem in a few words. A technical report of the system (no patient data) is sent with it.</source>
        <translation>Beschreiben Sie das Problem in wenigen Worten. Ein technischer Bericht des Systems (ohne Patientendaten) wird mitgesendet.</translation>
    </message>
    <message>
        <source>e.g. the patient table does not move</source>
        <translation>z. B. der Patiententisch fährt nicht</translation>
    </message>
    <message>
        <source>Problem</source>
        <translation>Problem</translation>
    </message>
    <message>
        <source>How urgent is it?</source>
        <translation>Wie dringend ist es?</translation>
    </message>
    <message>
        <source>Send</source>
        <translation>Senden</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>Abbrechen</translation>
    </message>
    <message>
        <source>Sending…</source>
        <translation>Wird gesendet…</translation>
    </message>
    <message>
        <source>Close</source>
        <translation>Schließen</translation>
    </message>
</context>
<context>
    <name>SessionDialog</name>
    <message>
        <source>Remote service session</source>
        <translation>Fernwartungssitzung</translation>
    </message>
    <message>
        <source>Type in the session ID the engineer gives you on the phone.</source>
        <translation>Geben Sie die Sitzungs-ID ein, die Ihnen der Servicetechniker am Telefon nennt.</translation>
    </message>
    <message>
        <source>Session ID</source>
        <translation>Sitzungs-ID</translation>
    </message>
    <message>
        <source>Continue</source>
        <translation>Weiter</translation>
    </message>
    <message>
        <source>Decline</source>
        <translation>Ablehnen</translation>
    </message>
    <message>
        <source>Accept</source>
        <translation>Annehmen</translation>
    </message>
    <message>
        <source>A session ID has 8 digits, like 1234 5678. Check the number with the engineer.</source>
        <translation>Eine Sitzungs-ID hat 8 Ziffern, z. B. 1234 5678. Gleichen Sie die Nummer mit dem Servicetechniker ab.</translation>
    </message>
    <message>
        <source>Examinations remain possible during this session.</source>
        <translation>Untersuchungen bleiben während dieser Sitzung möglich.</translation>
    </message>
    <message>
        <source>Until you or the engineer end it; at most {limit}</source>
        <translation>Bis Sie oder der Servicetechniker sie beenden; höchstens {limit}</translation>
    </message>
    <message>
        <source>You typed in this session&apos;s ID.</source>
        <translation>Sie haben die Sitzungs-ID eingegeben.</translation>
    </message>
    <message>
        <source>The engineer asked for this session through the service centre.</source>
        <translation>Der Servicetechniker hat diese Sitzung über die Servicezentrale angefragt.</translation>
    </message>
    <message>
        <source>Engineer</source>
        <translation>Servicetechniker</translation>
    </message>
    <message>
        <source>Engineer ID</source>
        <translation>Servicetechniker-ID</translation>
    </message>
    <message>
        <source>Company</source>
        <translation>Firma</translation>
    </message>
    <message>
        <source>Reason</source>
        <translation>Grund</translation>
    </message>
    <message>
        <source>Kind of session</source>
        <translation>Art der Sitzung</translation>
    </message>
    <message>
        <source>Access</source>
        <translation>Zugriff</translation>
    </message>
    <message>
        <source>How long</source>
        <translation>Dauer</translation>
    </message>
    <message>
        <source>Case number</source>
        <translation>Fallnummer</translation>
    </message>
    <message>
        <source>For this session only: more than your standing access ({standing}).</source>
        <translation>Nur für diese Sitzung: mehr als Ihre eingestellte Zugriffsstufe ({standing}).</translation>
    </message>
    <message>
        <source>Please confirm the data-privacy notice first.</source>
        <translation>Bitte bestätigen Sie zuerst den Datenschutzhinweis.</translation>
    </message>
    <message>
        <source>{name} ({company}) asks for {level}: {reason}</source>
        <translation>Anfrage von {name} ({company}): {level} – {reason}</translation>
    </message>
    <message>
        <source>{name} asks for {level}: {reason}</source>
        <translation>Anfrage von {name}: {level} – {reason}</translation>
    </message>
    <message>
        <source>Confirm or decline this session.</source>
        <translation>Nehmen Sie diese Sitzung an oder lehnen Sie sie ab.</translation>
    </message>
    <message>
        <source>Allowed by your standing access level. The engineer is signing in; you can end the session at any time.</source>
        <translation>Durch Ihre eingestellte Zugriffsstufe erlaubt. Der Servicetechniker meldet sich gerade an; Sie können die Sitzung jederzeit beenden.</translation>
    </message>
    <message>
        <source>Remote service request</source>
        <translation>Fernwartungsanfrage</translation>
    </message>
    <message>
        <source>The session ID cannot be checked now: the service centre cannot be reached. Try again in a few minutes.</source>
        <translation>Die Sitzungs-ID kann jetzt nicht geprüft werden: Die Servicezentrale ist nicht erreichbar. Versuchen Sie es in einigen Minuten erneut.</translation>
    </message>
    <message>
        <source>Too many wrong session IDs were typed in. Wait a few minutes, then try again.</source>
        <translation>Zu viele falsche Sitzungs-IDs eingegeben. Warten Sie einige Minuten und versuchen Sie es dann erneut.</translation>
    </message>
    <message>
        <source>The portal does not know this session ID, or it has expired. Check the number with the engineer.</source>
        <translation>Diese Sitzungs-ID ist dem Portal nicht bekannt oder abgelaufen. Gleichen Sie die Nummer mit dem Servicetechniker ab.</translation>
    </message>
</context>
<context>
    <name>TaskDialog</name>
    <message>
        <source>{name} ({company})</source>
        <translation>{name} ({company})</translation>
    </message>
    <message>
        <source>Engineer</source>
        <translation>Servicetechniker</translation>
    </message>
    <message>
        <source>Reason</source>
        <translation>Grund</translation>
    </message>
    <message>
        <source>Task</source>
        <translation>Aufgabe</translation>
    </message>
    <message>
        <source>Share your screen?</source>
        <translation>Bildschirm teilen?</translation>
    </message>
    <message>
        <source>{name} asks to see your screen</source>
        <translation>{name} möchte Ihren Bildschirm sehen</translation>
    </message>
    <message>
        <source>{name} will see your whole screen, including any patient data on it. The engineer can only watch until you allow control on the banner.</source>
        <translation>{name} sieht Ihren gesamten Bildschirm, einschließlich aller Patientendaten darauf. Der Servicetechniker kann nur zusehen, bis Sie im Banner das Steuern erlauben.</translation>
    </message>
    <message>
        <source>Close or cover what the engineer must not see before you allow. End session on the banner stops the sharing at any time.</source>
        <translation>Schließen oder verdecken Sie vor dem Erlauben, was der Servicetechniker nicht sehen darf. „Sitzung beenden“ im Banner beendet das Teilen jederzeit.</translation>
    </message>
    <message>
        <source>Allow this task?</source>
        <translation>Diese Aufgabe erlauben?</translation>
    </message>
    <message>
        <source>{name} asks for your approval: {task}</source>
        <translation>{name} bittet um Ihre Freigabe: {task}</translation>
    </message>
    <message>
        <source>The task runs only if you allow it. End session on the banner stops it at any time.</source>
        <translation>Die Aufgabe läuft nur, wenn Sie sie erlauben. „Sitzung beenden“ im Banner stoppt sie jederzeit.</translation>
    </message>
    <message>
        <source>The agent did not take your answer: {why}</source>
        <translation>Der Agent hat Ihre Antwort nicht übernommen: {why}</translation>
    </message>
    <message>
        <source>Decline</source>
        <translation>Ablehnen</translation>
    </message>
    <message>
        <source>Allow</source>
        <translation>Erlauben</translation>
    </message>
</context>
<context>
    <name>Tray</name>
    <message>
        <source>ServiceGate: remote service unavailable (the agent cannot be reached)</source>
        <translation>ServiceGate: Fernwartung nicht verfügbar (Agent nicht erreichbar)</translation>
    </message>
    <message>
        <source>ServiceGate: remote session active ({name}, {company})</source>
        <translation>ServiceGate: Fernwartungssitzung aktiv ({name}, {company})</translation>
    </message>
    <message>
        <source>ServiceGate: remote session active ({name})</source>
        <translation>ServiceGate: Fernwartungssitzung aktiv ({name})</translation>
    </message>
    <message>
        <source>ServiceGate: {access}</source>
        <translation>ServiceGate: {access}</translation>
    </message>
</context>
<context>
    <name>UpdateDialog</name>
    <message>
        <source>Software update {version}</source>
        <translation>Software-Update {version}</translation>
    </message>
    <message>
        <source>Virus patterns {version}</source>
        <translation>Virensignaturen {version}</translation>
    </message>
    <message>
        <source>Configuration update {version}</source>
        <translation>Konfigurations-Update {version}</translation>
    </message>
    <message>
        <source>No updates are waiting.</source>
        <translation>Es warten keine Updates.</translation>
    </message>
    <message>
        <source>Examinations must pause while this update installs. Approve it when no patient is being examined, or postpone it.</source>
        <translation>Während dieses Update installiert wird, müssen die Untersuchungen ruhen. Geben Sie es frei, wenn niemand untersucht wird, oder verschieben Sie es.</translation>
    </message>
    <message>
        <source>{count} bytes</source>
        <translation>{count} Byte</translation>
    </message>
    <message>
        <source>{whole} kB</source>
        <translation>{whole} kB</translation>
    </message>
    <message>
        <source>{whole}.{tenth} MB</source>
        <translation>{whole},{tenth} MB</translation>
    </message>
    <message>
        <source>{whole}.{tenth} GB</source>
        <translation>{whole},{tenth} GB</translation>
    </message>
    <message>
        <source>The vendor&apos;s signing key {key}</source>
        <translation>Signaturschlüssel des Herstellers {key}</translation>
    </message>
    <message>
        <source>The vendor&apos;s signing keys {keys}</source>
        <translation>Signaturschlüssel des Herstellers {keys}</translation>
    </message>
    <message>
        <source>A restart of ServiceGate; examinations must pause while it installs</source>
        <translation>Neustart von ServiceGate; die Untersuchungen müssen während der Installation ruhen</translation>
    </message>
    <message>
        <source>A restart of ServiceGate</source>
        <translation>Neustart von ServiceGate</translation>
    </message>
    <message>
        <source>Examinations must pause while it installs</source>
        <translation>Die Untersuchungen müssen während der Installation ruhen</translation>
    </message>
    <message>
        <source>Nothing: the scanner works as usual</source>
        <translation>Nichts: Der Scanner arbeitet wie gewohnt</translation>
    </message>
    <message>
        <source>the site&apos;s policy for virus patterns</source>
        <translation>die Richtlinie Ihres Hauses für Virensignaturen</translation>
    </message>
    <message>
        <source>Waiting for your decision</source>
        <translation>Wartet auf Ihre Entscheidung</translation>
    </message>
    <message>
        <source>Postponed: it will be offered again later.</source>
        <translation>Verschoben: Es wird später erneut angeboten.</translation>
    </message>
    <message>
        <source>Postponed until {until}: it will be offered again then.</source>
        <translation>Verschoben bis {until}: Dann wird es erneut angeboten.</translation>
    </message>
    <message>
        <source>Approved by {who}: the installation is starting.</source>
        <translation>Freigegeben durch {who}: Die Installation beginnt.</translation>
    </message>
    <message>
        <source>Approved by {who}: installing now. This window says when it is done.</source>
        <translation>Freigegeben durch {who}: Es wird jetzt installiert. Dieses Fenster zeigt an, wenn es fertig ist.</translation>
    </message>
    <message>
        <source>Installed: {title} is in use now.</source>
        <translation>Installiert: {title} ist jetzt in Gebrauch.</translation>
    </message>
    <message>
        <source>Not installed: {why}. Tell site IT.</source>
        <translation>Nicht installiert: {why}. Informieren Sie Ihre IT-Abteilung.</translation>
    </message>
    <message>
        <source>Not installed. Tell site IT.</source>
        <translation>Nicht installiert. Informieren Sie Ihre IT-Abteilung.</translation>
    </message>
    <message>
        <source>Rejected by {who} ({reason}): it will not be installed. The service centre is told.</source>
        <translation>Abgelehnt durch {who} ({reason}): Es wird nicht installiert. Die Servicezentrale wird informiert.</translation>
    </message>
    <message>
        <source>Rejected by {who}: it will not be installed. The service centre is told.</source>
        <translation>Abgelehnt durch {who}: Es wird nicht installiert. Die Servicezentrale wird informiert.</translation>
    </message>
    <message>
        <source>From</source>
        <translation>Von</translation>
    </message>
    <message>
        <source>The vendor</source>
        <translation>Der Hersteller</translation>
    </message>
    <message>
        <source>Signed by</source>
        <translation>Signiert mit</translation>
    </message>
    <message>
        <source>Size</source>
        <translation>Größe</translation>
    </message>
    <message>
        <source>What it needs</source>
        <translation>Erfordert</translation>
    </message>
    <message>
        <source>No release notes.</source>
        <translation>Keine Versionshinweise.</translation>
    </message>
    <message>
        <source>The reason has {count} characters; keep it to at most {maximum}.</source>
        <translation>Der Grund hat {count} Zeichen; bitte höchstens {maximum}.</translation>
    </message>
    <message>
        <source>In 1 hour ({time})</source>
        <translation>In 1 Stunde ({time})</translation>
    </message>
    <message>
        <source>This morning at {time}</source>
        <translation>Heute Morgen um {time}</translation>
    </message>
    <message>
        <source>Tonight at {time}</source>
        <translation>Heute Abend um {time}</translation>
    </message>
    <message>
        <source>Tomorrow at {time}</source>
        <translation>Morgen um {time}</translation>
    </message>
    <message>
        <source>That time has passed. Choose another one.</source>
        <translation>Dieser Zeitpunkt ist vorbei. Wählen Sie einen anderen.</translation>
    </message>
    <message>
        <source>An update can be postponed by at most {days} days.</source>
        <translation>Ein Update lässt sich um höchstens {days} Tage verschieben.</translation>
    </message>
    <message>
        <source>Update from the service centre</source>
        <translation>Update von der Servicezentrale</translation>
    </message>
    <message>
        <source>Release notes:</source>
        <translation>Versionshinweise:</translation>
    </message>
    <message>
        <source>Release notes</source>
        <translation>Versionshinweise</translation>
    </message>
    <message>
        <source>Reject…</source>
        <translation>Ablehnen…</translation>
    </message>
    <message>
        <source>Postpone…</source>
        <translation>Verschieben…</translation>
    </message>
    <message>
        <source>Approve</source>
        <translation>Freigeben</translation>
    </message>
    <message>
        <source>Back</source>
        <translation>Zurück</translation>
    </message>
    <message>
        <source>Postpone</source>
        <translation>Verschieben</translation>
    </message>
    <message>
        <source>When shall it be offered again?</source>
        <translation>Wann soll es erneut angeboten werden?</translation>
    </message>
    <message>
        <source>Why do you reject it? (optional; the service centre is told)</source>
        <translation>Warum lehnen Sie es ab? (optional; die Servicezentrale wird informiert)</translation>
    </message>
    <message>
        <source>Reason</source>
        <translation>Grund</translation>
    </message>
    <message>
        <source>e.g. not during the busy week</source>
        <translation>z. B. nicht in der vollen Woche</translation>
    </message>
    <message>
        <source>Reject update</source>
        <translation>Update ablehnen</translation>
    </message>
    <message>
        <source>Close</source>
        <translation>Schließen</translation>
    </message>
</context>
<context>
    <name>UpdateListDialog</name>
    <message>
        <source>Updates</source>
        <translation>Updates</translation>
    </message>
    <message>
        <source>Close</source>
        <translation>Schließen</translation>
    </message>
    <message>
        <source>Show…</source>
        <translation>Anzeigen…</translation>
    </message>
    <message>
        <source>These updates wait for your decision:</source>
        <translation>Diese Updates warten auf Ihre Entscheidung:</translation>
    </message>
</context>
</TS>
